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

    data class Prepared(val face: Box, val square: Square, val tensor: InputTensor)

    /** The largest face's crop and input tensor, or null when there is no face. */
    fun prepare(argb: IntArray, width: Int, height: Int, faces: List<Box>): Prepared? {
        val face = FaceSelection.largest(faces) ?: return null.also { smoother?.reset() }
        val square = FaceCrop.square(face, meta.input.crop)
        FaceCrop.resize(argb, width, height, square, meta.input.width, meta.input.height, meta.input.crop.padding, cropPixels)
        return Prepared(face, square, builder.build(cropPixels))
    }

    fun decode(raw: FloatArray): HeadPose = decoder.decode(raw)

    fun decode(raw: ByteArray): HeadPose = decoder.decode(raw)

    fun smooth(pose: HeadPose, timeNanos: Long): HeadPose = smoother?.update(pose, timeNanos) ?: pose

    /** Axes for a pose on its face crop, in image coordinates (0.4 of the crop side, as the goldens). */
    fun axes(pose: HeadPose, square: Square): AxesProjection = PoseAxes.project(pose, square.center, AXES_LENGTH_FRACTION * square.side)

    companion object {
        const val AXES_LENGTH_FRACTION = 0.4
    }
}
