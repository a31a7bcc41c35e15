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

/**
 * A detected face: its box and, where the detector gives them, the centres of the subject's right eye
 * (image left when upright) and left eye, which a crop spec that turns with the eye line needs.
 */
data class Face(val box: Box, val rightEye: Point? = null, val leftEye: Point? = null)

/** Yaw, pitch and roll in degrees, in the pose convention of docs/data.md. */
data class HeadPose(val yaw: Double, val pitch: Double, val roll: Double)

/** Picks the face the app estimates: the largest box (several faces), or none. */
object FaceSelection {
    fun largest(boxes: List<Box>): Box? = boxes.maxByOrNull { it.area }

    fun largestFace(faces: List<Face>): Face? = faces.maxByOrNull { it.box.area }
}
