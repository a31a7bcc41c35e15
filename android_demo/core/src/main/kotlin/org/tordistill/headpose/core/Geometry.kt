package org.tordistill.headpose.core

/** A point in pixels (x right, y down). */
data class Point(val x: Double, val y: Double)

/** An axis-aligned box in pixels: a detector's face box. */
data class Box(val left: Double, val top: Double, val right: Double, val bottom: Double) {
    val width: Double get() = right - left
    val height: Double get() = bottom - top
    val area: Double get() = width * height
}

/** The square region of a frame that becomes the model input: top-left corner and side, in pixels. */
data class Square(val left: Double, val top: Double, val side: Double) {
    val center: Point get() = Point(left + side / 2.0, top + side / 2.0)
}

/** Yaw, pitch and roll in degrees, in the pose convention of docs/data.md. */
data class HeadPose(val yaw: Double, val pitch: Double, val roll: Double)

/** Picks the face the app estimates: the largest box (several faces), or none. */
object FaceSelection {
    fun largest(boxes: List<Box>): Box? = boxes.maxByOrNull { it.area }
}
