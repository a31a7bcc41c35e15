package org.tordistill.headpose.core

import kotlin.math.max

/**
 * Image (upright, as the model and the detector saw it) -> view coordinates for a preview that fills
 * the view (centre crop, like PreviewView's FILL_CENTER), mirrored for the front camera.
 */
data class ViewMapping(val imageWidth: Int, val imageHeight: Int, val viewWidth: Int, val viewHeight: Int, val mirrored: Boolean) {
    val scale: Double = max(viewWidth.toDouble() / imageWidth, viewHeight.toDouble() / imageHeight)
    private val dx = (viewWidth - imageWidth * scale) / 2.0
    private val dy = (viewHeight - imageHeight * scale) / 2.0

    fun map(p: Point): Point {
        val x = p.x * scale + dx
        return Point(if (mirrored) viewWidth - x else x, p.y * scale + dy)
    }

    fun map(box: Box): Box {
        val a = map(Point(box.left, box.top))
        val b = map(Point(box.right, box.bottom))
        return Box(minOf(a.x, b.x), a.y, maxOf(a.x, b.x), b.y)
    }
}
