package org.tordistill.headpose.core

import kotlin.math.floor
import kotlin.math.max

/**
 * Face box -> square crop -> model-sized ARGB pixels. Mirrored bit for bit by exporters/golden.py
 * (crop_square, crop_resize): same formulas, same order of float64 operations.
 */
object FaceCrop {
    /** The square around [box]: side = scale * max(w, h), centre moved down by shiftY * side. */
    fun square(box: Box, crop: CropSpec): Square {
        val side = crop.scale * max(box.right - box.left, box.bottom - box.top)
        val cx = (box.left + box.right) / 2.0
        val cy = (box.top + box.bottom) / 2.0 + crop.shiftY * side
        return Square(cx - side / 2.0, cy - side / 2.0, side)
    }

    /**
     * Bilinear resample of [square] of an ARGB frame ([width] x [height], row-major, as Bitmap.getPixels
     * gives it) to [outW] x [outH] ARGB, sampling at pixel centres; pixels outside the frame repeat the
     * edge. Alpha is set to 255.
     */
    fun resize(argb: IntArray, width: Int, height: Int, square: Square, outW: Int, outH: Int): IntArray {
        require(argb.size == width * height) { "frame has ${argb.size} pixels, expected $width x $height" }
        require(square.side > 0.0) { "crop side must be > 0, got ${square.side}" }
        val out = IntArray(outW * outH)
        val xa = IntArray(outW); val xb = IntArray(outW); val ax = DoubleArray(outW)
        for (j in 0 until outW) {
            val sx = square.left + (j + 0.5) * (square.side / outW) - 0.5
            val f = floor(sx)
            ax[j] = sx - f
            xa[j] = f.toInt().coerceIn(0, width - 1)
            xb[j] = (f.toInt() + 1).coerceIn(0, width - 1)
        }
        for (i in 0 until outH) {
            val sy = square.top + (i + 0.5) * (square.side / outH) - 0.5
            val f = floor(sy)
            val ay = sy - f
            val rowA = f.toInt().coerceIn(0, height - 1) * width
            val rowB = (f.toInt() + 1).coerceIn(0, height - 1) * width
            for (j in 0 until outW) {
                var pixel = 0xFF shl 24
                for (shift in intArrayOf(16, 8, 0)) {
                    val p00 = ((argb[rowA + xa[j]] shr shift) and 0xFF).toDouble()
                    val p01 = ((argb[rowA + xb[j]] shr shift) and 0xFF).toDouble()
                    val p10 = ((argb[rowB + xa[j]] shr shift) and 0xFF).toDouble()
                    val p11 = ((argb[rowB + xb[j]] shr shift) and 0xFF).toDouble()
                    val top = (1.0 - ax[j]) * p00 + ax[j] * p01
                    val bottom = (1.0 - ax[j]) * p10 + ax[j] * p11
                    val v = (1.0 - ay) * top + ay * bottom
                    pixel = pixel or (floor(v + 0.5).coerceIn(0.0, 255.0).toInt() shl shift)
                }
                out[i * outW + j] = pixel
            }
        }
        return out
    }
}
