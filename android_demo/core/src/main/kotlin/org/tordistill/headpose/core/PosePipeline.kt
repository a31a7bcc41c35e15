package org.tordistill.headpose.core

/**
 * Everything the app needs per frame, from meta to drawable result: crop, tensor, decoding, smoothing
 * and axes. The runtime (LiteRT) sits outside: [PosePipeline.prepare] gives it the tensor, [decode]
 * and [smooth] turn its output into what the overlay draws. The crop pixels and the input tensor are
 * allocated once and rewritten every frame, so a [Prepared] is valid until the next [prepare].
 */
class PosePipeline(val meta: ModelMeta, smooth: Boolean = true) {
    private val builder = TensorBuilder(meta.input)
    private val decoder = PoseDecoder(meta.output)
    private val smoother = if (smooth) PoseSmoother(meta.smoothing) else null
    private val cropPixels = IntArray(meta.input.width * meta.input.height)

    /** The face, its crop square, how far the crop turned (null: not at all) and the input tensor. */
    data class Prepared(val face: Face, val square: Square, val turn: Turn?, val tensor: InputTensor)

    /** The largest face's crop and input tensor, or null when there is no face. */
    fun prepare(argb: IntArray, width: Int, height: Int, faces: List<Face>): Prepared? {
        val face = FaceSelection.largestFace(faces) ?: return null.also { smoother?.reset() }
        val crop = meta.input.crop
        val square = FaceCrop.square(face.box, crop)
        val turn = FaceCrop.turn(face, crop)
        val pivot = Point((face.box.left + face.box.right) / 2.0, (face.box.top + face.box.bottom) / 2.0)
        FaceCrop.resize(argb, width, height, square, meta.input.width, meta.input.height, crop.padding, cropPixels, turn, pivot)
        return Prepared(face, square, turn, builder.build(cropPixels))
    }

    /** The model's output as a pose on its crop; [inFrame] turns it into the frame's. */
    fun decode(raw: FloatArray): HeadPose = decoder.decode(raw)

    fun decode(raw: ByteArray): HeadPose = decoder.decode(raw)

    /** A pose read on [prepared]'s crop, in the frame: unchanged unless the crop turned. */
    fun inFrame(pose: HeadPose, prepared: Prepared): HeadPose =
        prepared.turn?.let { PoseAxes.turned(pose, it.degrees) } ?: pose

    fun smooth(pose: HeadPose, timeNanos: Long): HeadPose = smoother?.update(pose, timeNanos) ?: pose

    /** Axes for a pose on its face crop, in image coordinates (0.4 of the crop side, as the goldens). */
    fun axes(pose: HeadPose, square: Square): AxesProjection = PoseAxes.project(pose, square.center, AXES_LENGTH_FRACTION * square.side)

    companion object {
        const val AXES_LENGTH_FRACTION = 0.4
    }
}
