package org.tordistill.headpose.core

import kotlin.math.floor
import kotlin.math.max

/**
 * Face box -> square crop -> model-sized ARGB pixels. The formulas of pipeline/faces/crop.py
 * (crop_square, crop_resize) in the same order of float64 operations, so both sides cut the same
 * bytes (GoldenTest checks it on rendered faces and on real photos through the detector's box).
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
     * gives it) to [outW] x [outH] ARGB, sampling at pixel centres, written into [out] (pass the previous
     * frame's array to reuse it). Outside the frame [padding] EDGE repeats the edge pixels; ZERO reads
     * black, done as crop_resize does it: one black pixel around the frame and clamping into it, which is
     * bilinear interpolation with zeros outside. Alpha is set to 255.
     */
    fun resize(
        argb: IntArray, width: Int, height: Int, square: Square, outW: Int, outH: Int,
        padding: Padding = Padding.EDGE, out: IntArray = IntArray(outW * outH),
    ): IntArray {
        require(argb.size == width * height) { "frame has ${argb.size} pixels, expected $width x $height" }
        require(square.side > 0.0) { "crop side must be > 0, got ${square.side}" }
        require(out.size == outW * outH) { "output buffer has ${out.size} pixels, expected $outW x $outH" }
        // In the zero-padded case the sampling grid lives in the (width + 2) x (height + 2) padded frame.
        val pad = if (padding == Padding.ZERO) 1 else 0
        val left = if (pad == 1) square.left + 1.0 else square.left
        val top = if (pad == 1) square.top + 1.0 else square.top
        val pw = width + 2 * pad
        val ph = height + 2 * pad
        // Column / row of the padded frame -> column / row of the frame, or -1 for the black border.
        fun col(x: Int) = x.coerceIn(0, pw - 1).let { if (pad == 1 && (it == 0 || it == pw - 1)) -1 else it - pad }
        fun row(y: Int) = y.coerceIn(0, ph - 1).let { if (pad == 1 && (it == 0 || it == ph - 1)) -1 else it - pad }
        val xa = IntArray(outW); val xb = IntArray(outW); val ax = DoubleArray(outW)
        for (j in 0 until outW) {
            val sx = left + (j + 0.5) * (square.side / outW) - 0.5
            val f = floor(sx)
            ax[j] = sx - f
            xa[j] = col(f.toInt())
            xb[j] = col(f.toInt() + 1)
        }
        fun channel(r: Int, c: Int, shift: Int): Double =
            if (r < 0 || c < 0) 0.0 else ((argb[r * width + c] shr shift) and 0xFF).toDouble()
        for (i in 0 until outH) {
            val sy = top + (i + 0.5) * (square.side / outH) - 0.5
            val f = floor(sy)
            val ay = sy - f
            val ra = row(f.toInt())
            val rb = row(f.toInt() + 1)
            for (j in 0 until outW) {
                var pixel = 0xFF shl 24
                var shift = 16
                while (shift >= 0) {
                    val top0 = (1.0 - ax[j]) * channel(ra, xa[j], shift) + ax[j] * channel(ra, xb[j], shift)
                    val bottom = (1.0 - ax[j]) * channel(rb, xa[j], shift) + ax[j] * channel(rb, xb[j], shift)
                    val v = (1.0 - ay) * top0 + ay * bottom
                    pixel = pixel or (floor(v + 0.5).coerceIn(0.0, 255.0).toInt() shl shift)
                    shift -= 8
                }
                out[i * outW + j] = pixel
            }
        }
        return out
    }
}
