package org.tordistill.headpose.core

import kotlin.math.atan2
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.sqrt

/**
 * (cos, sin) of a clockwise on-screen angle (y down): how far a crop turns. Made of the eye landmarks
 * with one correctly rounded square root and no trigonometry, as pipeline/faces/crop.py eye_line, so
 * both sides turn by the same bits.
 */
data class Turn(val cos: Double, val sin: Double) {
    /** The angle in degrees, for turning the model's pose back into the frame. */
    val degrees: Double get() = Math.toDegrees(atan2(sin, cos))
}

/**
 * Face box -> square crop -> model-sized ARGB pixels. The formulas of pipeline/faces/crop.py
 * (crop_square, crop_resize) in the same order of float64 operations, so both sides cut the same
 * bytes (GoldenTest checks it on rendered faces and on real photos through the detector's box).
 */
object FaceCrop {
    /** The turn of the line from the subject's right eye to their left eye (pipeline/faces/crop.py eye_line). */
    fun eyeLine(rightEye: Point, leftEye: Point): Turn {
        val dx = leftEye.x - rightEye.x
        val dy = leftEye.y - rightEye.y
        val length = sqrt(dx * dx + dy * dy)
        require(length > 0.0) { "the two eye landmarks coincide: the eye line has no direction" }
        return Turn(dx / length, dy / length)
    }

    /** How far [face]'s crop turns under [crop], or null when it does not turn. */
    fun turn(face: Face, crop: CropSpec): Turn? = when (crop.rotate) {
        Rotate.NONE -> null
        Rotate.EYE_LINE -> eyeLine(
            requireNotNull(face.rightEye) { "the model turns crops with the eye line: the detector gave no eye landmarks" },
            requireNotNull(face.leftEye) { "the model turns crops with the eye line: the detector gave no eye landmarks" },
        )
    }

    /** The square around [box]: side = scale * max(w, h), centre moved down by shiftY * side. */
    fun square(box: Box, crop: CropSpec): Square = square(box, crop.scale, crop.shiftY)

    /** The square of [scale] x max(w, h) around [box], centre moved down by [shiftY] x side (crop_square). */
    fun square(box: Box, scale: Double, shiftY: Double): Square {
        val side = scale * max(box.right - box.left, box.bottom - box.top)
        val cx = (box.left + box.right) / 2.0
        val cy = (box.top + box.bottom) / 2.0 + shiftY * side
        return Square(cx - side / 2.0, cy - side / 2.0, side)
    }

    /**
     * Bilinear resample of [square] of an ARGB frame ([width] x [height], row-major, as Bitmap.getPixels
     * gives it) to [outW] x [outH] ARGB, sampling at pixel centres, written into [out] (pass the previous
     * frame's array to reuse it). Outside the frame [padding] EDGE repeats the edge pixels; ZERO reads
     * black, done as crop_resize does it: one black pixel around the frame and clamping into it, which is
     * bilinear interpolation with zeros outside. Alpha is set to 255. A [turn] turns the sampling grid
     * clockwise about [pivot] (default the square's centre): the crop shows the frame turned back.
     */
    fun resize(
        argb: IntArray, width: Int, height: Int, square: Square, outW: Int, outH: Int,
        padding: Padding = Padding.EDGE, out: IntArray = IntArray(outW * outH), turn: Turn? = null, pivot: Point? = null,
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
        fun channel(r: Int, c: Int, shift: Int): Double =
            if (r < 0 || c < 0) 0.0 else ((argb[r * width + c] shr shift) and 0xFF).toDouble()
        if (turn != null) {
            val px = if (pivot == null) left + square.side / 2.0 else pivot.x + pad
            val py = if (pivot == null) top + square.side / 2.0 else pivot.y + pad
            for (i in 0 until outH) {
                val sy = top + (i + 0.5) * (square.side / outH) - 0.5
                val dy = sy + 0.5 - py
                for (j in 0 until outW) {
                    val sx = left + (j + 0.5) * (square.side / outW) - 0.5
                    val dx = sx + 0.5 - px
                    val gx = px + (turn.cos * dx - turn.sin * dy) - 0.5
                    val gy = py + (turn.sin * dx + turn.cos * dy) - 0.5
                    val fx = floor(gx)
                    val fy = floor(gy)
                    out[i * outW + j] = blend(gx - fx, gy - fy, col(fx.toInt()), col(fx.toInt() + 1), row(fy.toInt()), row(fy.toInt() + 1), ::channel)
                }
            }
            return out
        }
        val xa = IntArray(outW); val xb = IntArray(outW); val ax = DoubleArray(outW)
        for (j in 0 until outW) {
            val sx = left + (j + 0.5) * (square.side / outW) - 0.5
            val f = floor(sx)
            ax[j] = sx - f
            xa[j] = col(f.toInt())
            xb[j] = col(f.toInt() + 1)
        }
        for (i in 0 until outH) {
            val sy = top + (i + 0.5) * (square.side / outH) - 0.5
            val f = floor(sy)
            val ay = sy - f
            val ra = row(f.toInt())
            val rb = row(f.toInt() + 1)
            for (j in 0 until outW) out[i * outW + j] = blend(ax[j], ay, xa[j], xb[j], ra, rb, ::channel)
        }
        return out
    }

    /** One output pixel: the bilinear blend of four taps (row / column -1: black), alpha 255. */
    private inline fun blend(
        ax: Double, ay: Double, xa: Int, xb: Int, ra: Int, rb: Int, channel: (Int, Int, Int) -> Double,
    ): Int {
        var pixel = 0xFF shl 24
        var shift = 16
        while (shift >= 0) {
            val top0 = (1.0 - ax) * channel(ra, xa, shift) + ax * channel(ra, xb, shift)
            val bottom = (1.0 - ax) * channel(rb, xa, shift) + ax * channel(rb, xb, shift)
            val v = (1.0 - ay) * top0 + ay * bottom
            pixel = pixel or (floor(v + 0.5).coerceIn(0.0, 255.0).toInt() shl shift)
            shift -= 8
        }
        return pixel
    }
}
