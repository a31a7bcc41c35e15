package org.tordistill.headpose.app

import android.content.res.AssetManager
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.TensorBuffer
import org.tordistill.headpose.core.HeadPose
import org.tordistill.headpose.core.InputTensor
import org.tordistill.headpose.core.ModelMeta
import org.tordistill.headpose.core.PoseDecoder
import org.tordistill.headpose.core.DType
import java.io.IOException

/**
 * The student on LiteRT's CompiledModel API, compiled for exactly one accelerator: CPU (XNNPACK) or
 * GPU (needs the litert-gpu artifact). A GPU request is never silently served by the CPU: it fails,
 * and [create] then reports the failure and builds the CPU one, so [ranOn] always says what ran.
 */
class LiteRtPoseEstimator private constructor(
    private val model: CompiledModel,
    private val meta: ModelMeta,
    override val ranOn: String,
) : PoseEstimator {
    private val inputs: List<TensorBuffer> = model.createInputBuffers()
    private val outputs: List<TensorBuffer> = model.createOutputBuffers()
    private val decoder = PoseDecoder(meta.output)
    private var lastNanos = 0L

    override fun estimate(input: InputTensor): HeadPose {
        val t0 = System.nanoTime()
        when (input) {
            is InputTensor.Float32 -> inputs[0].writeFloat(input.data)
            is InputTensor.Int8 -> inputs[0].writeInt8(input.data)
        }
        model.run(inputs, outputs)
        val pose = when (meta.output.dtype) {
            DType.FLOAT32 -> decoder.decode(outputs[0].readFloat())
            DType.INT8 -> decoder.decode(outputs[0].readInt8())
        }
        lastNanos = System.nanoTime() - t0
        return pose
    }

    override fun lastInferenceTimeNanos(): Long = lastNanos

    override fun close() {
        inputs.forEach { it.close() }
        outputs.forEach { it.close() }
        model.close()
    }

    companion object {
        const val MODEL_ASSET = "model.tflite"

        /**
         * The estimator for [choice]; a GPU that cannot compile the model falls back to CPU, saying so in
         * [ranOn]. A missing model file or one LiteRT cannot load throws with a message for the screen.
         */
        fun create(assets: AssetManager, meta: ModelMeta, choice: AcceleratorChoice): LiteRtPoseEstimator {
            try {
                assets.open(MODEL_ASSET).close()
            } catch (e: IOException) {
                throw IOException("assets/$MODEL_ASSET is missing: run ./gradlew :app:importModel -PmodelDir=... (see docs/android.md)", e)
            }
            if (choice == AcceleratorChoice.GPU) {
                try {
                    val gpu = CompiledModel.create(assets, MODEL_ASSET, CompiledModel.Options(Accelerator.GPU))
                    return LiteRtPoseEstimator(gpu, meta, "GPU")
                } catch (e: Exception) {
                    val cpu = CompiledModel.create(assets, MODEL_ASSET, CompiledModel.Options(Accelerator.CPU))
                    return LiteRtPoseEstimator(cpu, meta, "CPU (XNNPACK) - GPU unavailable: ${e.message?.lineSequence()?.first()}")
                }
            }
            return LiteRtPoseEstimator(CompiledModel.create(assets, MODEL_ASSET, CompiledModel.Options(Accelerator.CPU)), meta, "CPU (XNNPACK)")
        }
    }
}
