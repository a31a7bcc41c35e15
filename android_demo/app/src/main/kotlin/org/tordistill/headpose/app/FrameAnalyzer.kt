package org.tordistill.headpose.app

import android.graphics.Bitmap
import android.graphics.Matrix
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import com.google.android.gms.tasks.Tasks
import com.google.mlkit.vision.common.InputImage
import com.google.mlkit.vision.face.FaceDetection
import com.google.mlkit.vision.face.FaceDetector
import com.google.mlkit.vision.face.FaceDetectorOptions
import org.tordistill.headpose.core.Box
import org.tordistill.headpose.core.PosePipeline

/**
 * One camera frame -> [FrameResult], on CameraX's analysis thread: upright RGBA bitmap (the sensor
 * rotation applied, so any device orientation works), ML Kit faces, the core's crop and tensor for the
 * largest face, the estimator, smoothing and axes. [estimator] is read and swapped on this thread only.
 */
class FrameAnalyzer(
    private val pipeline: PosePipeline,
    private val onResult: (FrameResult) -> Unit,
) : ImageAnalysis.Analyzer, AutoCloseable {
    var estimator: PoseEstimator? = null

    private val detector: FaceDetector = FaceDetection.getClient(
        FaceDetectorOptions.Builder()
            .setPerformanceMode(FaceDetectorOptions.PERFORMANCE_MODE_FAST)
            .setMinFaceSize(0.15f)
            .build(),
    )

    override fun analyze(image: ImageProxy) {
        val upright = image.use { upright(it) }
        val faces = Tasks.await(detector.process(InputImage.fromBitmap(upright, 0))).map {
            Box(it.boundingBox.left.toDouble(), it.boundingBox.top.toDouble(), it.boundingBox.right.toDouble(), it.boundingBox.bottom.toDouble())
        }
        val w = upright.width
        val h = upright.height
        val est = estimator
        val prepared = if (est == null) null else {
            val pixels = IntArray(w * h).also { upright.getPixels(it, 0, w, 0, 0, w, h) }
            pipeline.prepare(pixels, w, h, faces)
        }
        if (prepared == null || est == null) {
            onResult(FrameResult(w, h, faces, null, null, null, null))
            return
        }
        val pose = pipeline.smooth(est.estimate(prepared.tensor), System.nanoTime())
        onResult(FrameResult(w, h, faces, prepared.face, pose, pipeline.axes(pose, prepared.square), est.lastInferenceTimeNanos() / 1e6))
    }

    private fun upright(image: ImageProxy): Bitmap {
        val bitmap = image.toBitmap()
        val degrees = image.imageInfo.rotationDegrees
        if (degrees == 0) return bitmap
        val m = Matrix().apply { postRotate(degrees.toFloat()) }
        return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, m, true)
    }

    override fun close() {
        detector.close()
        estimator?.close()
        estimator = null
    }
}
