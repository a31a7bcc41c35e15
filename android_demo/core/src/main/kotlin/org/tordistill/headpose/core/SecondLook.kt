package org.tordistill.headpose.core

import kotlin.math.ceil
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min
import kotlin.math.sqrt

/**
 * Where the second look reads a face: [square] = REGION x the first box's longer side around its
 * centre (no shift), [turn] = its eye line, [pivot] = the box centre the square turns about
 * (pipeline/faces/locate.py Region).
 */
data class Region(val square: Square, val turn: Turn, val pivot: Point)

/**
 * The second look's geometry (pipeline/faces/locate.py region, patch, nearest, to_frame, from_patch),
 * for a model whose crop spec's box source ends in `_second_look` ([CropSpec.secondLook]): the square
 * of [REGION] x the face box around its centre, turned level by the eye line, is resampled to a
 * [side] x [side] patch ([patch]); the detector runs on the patch; the face nearest the patch centre
 * ([nearest]) is mapped back into the frame ([fromPatch]) and is the face the crop is cut from. The
 * same float64 operations in the same order as the Python side, so both give the same bits
 * (GoldenTest checks region, patch bytes and mapping on real photos). The detector itself runs outside
 * the core (ML Kit in the app). The patch and window buffers are kept and rewritten by every [patch].
 */
class SecondLook(val side: Int = APP_PATCH_SIDE) {
    init {
        require(side >= 8) { "the patch side must be >= 8 px, got $side" }
    }

    /** The last [patch]: [side] x [side] ARGB, rewritten by every call. */
    val pixels = IntArray(side * side)
    private var window = IntArray(0)

    /**
     * [region]'s square of an ARGB frame ([width] x [height], row-major) turned level into [pixels]:
     * FaceCrop.resize with edge padding, turned about the box centre. As locate.py's patch, it
     * resamples only the window the turned square reaches (its circumcircle plus 2 px for the bilinear
     * taps), with the square and pivot moved into the window: the same pixels as the whole frame (edge
     * clamping only meets the frame's own edges), and the same sample positions bit for bit as Python's.
     */
    fun patch(argb: IntArray, width: Int, height: Int, region: Region): IntArray {
        require(argb.size == width * height) { "frame has ${argb.size} pixels, expected $width x $height" }
        val sq = region.square
        val px = region.pivot.x
        val py = region.pivot.y
        val reach = sq.side / sqrt(2.0) + 2.0
        // clamped into the frame so that the window is never empty (Python never meets that: its box
        // centres lie in the frame)
        val wx = max(0, floor(px - reach).toInt()).coerceAtMost(width - 1)
        val wy = max(0, floor(py - reach).toInt()).coerceAtMost(height - 1)
        val ww = max(wx + 1, min(width, ceil(px + reach).toInt() + 1)) - wx
        val wh = max(wy + 1, min(height, ceil(py + reach).toInt() + 1)) - wy
        if (window.size != ww * wh) window = IntArray(ww * wh)
        for (y in 0 until wh) System.arraycopy(argb, (wy + y) * width + wx, window, y * ww, ww)
        return FaceCrop.resize(window, ww, wh, Square(sq.left - wx, sq.top - wy, sq.side), side, side, Padding.EDGE,
            pixels, region.turn, Point(px - wx, py - wy))
    }

    companion object {
        /** The square's side in first-box sides (locate.py REGION): the face fills about half the patch. */
        const val REGION = 2.0

        /**
         * The app's patch side. Python's is 128 because BlazeFace reads 128 x 128 whatever it is given;
         * ML Kit reads the bitmap it is given and wants a face of at least about 100 x 100 px for its
         * landmarks (its input guidelines), and the face fills about half the patch: at 256 px it is
         * about 128 px across, at 128 px only 64. Larger patches cost ML Kit more time; the guidelines'
         * 480 x 360 px for a whole image is for finding faces anywhere in it, not one already centred.
         */
        const val APP_PATCH_SIDE = 256

        /** The region the second look reads [face] again in; it needs the face's two eyes. */
        fun region(face: Face): Region {
            val turn = FaceCrop.eyeLine(
                requireNotNull(face.rightEye) { "the second look turns by the eye line: the detector gave no eye landmarks" },
                requireNotNull(face.leftEye) { "the second look turns by the eye line: the detector gave no eye landmarks" },
            )
            val box = face.box
            return Region(FaceCrop.square(box, REGION, 0.0), turn, Point((box.left + box.right) / 2.0, (box.top + box.bottom) / 2.0))
        }

        /** The face whose box centre is nearest the centre of a [side] x [side] patch, or null for none. */
        fun nearest(found: List<Face>, side: Int): Face? {
            val middle = side / 2.0 - 0.5
            return found.minByOrNull {
                val dx = (it.box.left + it.box.right) / 2.0 - middle
                val dy = (it.box.top + it.box.bottom) / 2.0 - middle
                sqrt(dx * dx + dy * dy)
            }
        }

        /**
         * A position on a [side] x [side] patch of [region] (pixel i's centre at i, the detector's
         * convention) in the frame: it sat at left + (q + 0.5) k on the square's grid (k = square side /
         * [side]) before the grid turned clockwise by the eye line about the pivot (locate.py to_frame).
         */
        fun toFrame(q: Point, region: Region, side: Int): Point {
            val sq = region.square
            val px = region.pivot.x
            val py = region.pivot.y
            val c = region.turn.cos
            val s = region.turn.sin
            val k = sq.side / side
            val dx = sq.left + (q.x + 0.5) * k - px
            val dy = sq.top + (q.y + 0.5) * k - py
            return Point(px + c * dx - s * dy - 0.5, py + s * dx + c * dy - 0.5)
        }

        /**
         * [again], found on a [side] x [side] patch of [region], in the frame: its box centre and eyes
         * through [toFrame], its box the square of its longer side (Python's Detection.size) times the
         * patch-to-frame scale around the mapped centre (locate.py from_patch).
         */
        fun fromPatch(again: Face, region: Region, side: Int): Face {
            val b = again.box
            val c = toFrame(Point((b.left + b.right) / 2.0, (b.top + b.bottom) / 2.0), region, side)
            val half = max(b.right - b.left, b.bottom - b.top) * (region.square.side / side) / 2.0
            return Face(Box(c.x - half, c.y - half, c.x + half, c.y + half),
                again.rightEye?.let { toFrame(it, region, side) }, again.leftEye?.let { toFrame(it, region, side) })
        }
    }
}
