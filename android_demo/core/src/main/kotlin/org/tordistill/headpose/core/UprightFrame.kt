package org.tordistill.headpose.core

import java.nio.ByteBuffer

/**
 * A camera frame as the detector and the crop need it: RGBA_8888 rows (what CameraX's ImageAnalysis
 * gives with OUTPUT_IMAGE_FORMAT_RGBA_8888, rows [rowStride] bytes apart) turned upright by the
 * sensor's clockwise [rotationDegrees] into ARGB ints (as Bitmap.getPixels packs them). The pixel
 * array is kept and rewritten by every [fill] of the same size: no per-frame allocation.
 */
class UprightFrame {
    var width = 0
        private set
    var height = 0
        private set
    var pixels = IntArray(0)
        private set

    fun fill(rgba: ByteBuffer, srcWidth: Int, srcHeight: Int, rowStride: Int, rotationDegrees: Int): IntArray {
        require(rotationDegrees in ROTATIONS) { "rotation must be one of $ROTATIONS, got $rotationDegrees" }
        require(rowStride >= 4 * srcWidth) { "row stride $rowStride is shorter than $srcWidth RGBA pixels" }
        val base = rgba.position()
        require(rgba.limit() - base >= rowStride * (srcHeight - 1) + 4 * srcWidth) { "buffer too small for $srcWidth x $srcHeight" }
        val sideways = rotationDegrees == 90 || rotationDegrees == 270
        width = if (sideways) srcHeight else srcWidth
        height = if (sideways) srcWidth else srcHeight
        if (pixels.size != srcWidth * srcHeight) pixels = IntArray(srcWidth * srcHeight)
        val out = pixels
        val w = srcWidth
        val h = srcHeight
        for (y in 0 until h) {
            var i = base + y * rowStride
            for (x in 0 until w) {
                val argb = (0xFF shl 24) or ((rgba.get(i).toInt() and 0xFF) shl 16) or
                    ((rgba.get(i + 1).toInt() and 0xFF) shl 8) or (rgba.get(i + 2).toInt() and 0xFF)
                i += 4
                // Sensor (x, y) -> upright index; upright rows are `width` long.
                out[when (rotationDegrees) {
                    0 -> y * w + x
                    90 -> x * h + (h - 1 - y)
                    180 -> (h - 1 - y) * w + (w - 1 - x)
                    else -> (w - 1 - x) * h + y
                }] = argb
            }
        }
        return out
    }

    companion object {
        val ROTATIONS = listOf(0, 90, 180, 270)
    }
}
