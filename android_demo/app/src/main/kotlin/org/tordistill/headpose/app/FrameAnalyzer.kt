package org.tordistill.headpose.app

import android.graphics.Bitmap
import android.util.Log
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import com.google.android.gms.tasks.Tasks
import com.google.mlkit.vision.common.InputImage
import com.google.mlkit.vision.face.FaceDetection
import com.google.mlkit.vision.face.FaceDetector
import com.google.mlkit.vision.face.FaceDetectorOptions
import com.google.mlkit.vision.face.FaceLandmark
import org.tordistill.headpose.core.Box
import org.tordistill.headpose.core.Face
import org.tordistill.headpose.core.FrameStats
import org.tordistill.headpose.core.Point
import org.tordistill.headpose.core.PosePipeline
import org.tordistill.headpose.core.Rotate
import org.tordistill.headpose.core.UprightFrame

/**
 * One camera frame -> [FrameResult], on CameraX's analysis thread: the RGBA rows turned upright (the
 * sensor rotation applied, so any device orientation works) into a reused pixel array and bitmap, ML
 * Kit faces with their eye landmarks, the core's crop (turned with the eyes where the model's crop spec
 * says so) and tensor for the largest face (reused buffers too), the estimator,
 * smoothing and axes, and the speed figures. [estimator] is read and swapped on this thread only.
 * A frame that throws (ML Kit, LiteRT, a bad box) is logged and reported through [onError]; the next
 * frame is analysed as usual.
 */
class FrameAnalyzer(
    private val pipeline: PosePipeline,
    private val onResult: (FrameResult) -> Unit,
    private val onError: (Exception) -> Unit,
) : ImageAnalysis.Analyzer, AutoCloseable {
    var estimator: PoseEstimator? = null

    private val detector: FaceDetector = FaceDetection.getClient(
        FaceDetectorOptions.Builder()
            .setPerformanceMode(FaceDetectorOptions.PERFORMANCE_MODE_FAST)
            // the eyes: a model whose crop spec turns with the eye line needs them (ML Kit's LEFT_EYE is
            // the subject's left eye, as BlazeFace's keypoint 1 the Python side uses)
            .setLandmarkMode(FaceDetectorOptions.LANDMARK_MODE_ALL)
            .setMinFaceSize(0.15f)
            .build(),
    )
    private val frame = UprightFrame()
    private var bitmap: Bitmap? = null // the upright frame for ML Kit, kept while the frame size holds
    private val stats = FrameStats()

    override fun analyze(image: ImageProxy) {
        try {
            image.use { analyzeFrame(it) }
        } catch (e: Exception) {
            Log.e(TAG, "frame analysis failed", e)
            onError(e)
        }
    }

    private fun analyzeFrame(image: ImageProxy) {
        val t0 = System.nanoTime()
        val plane = image.planes[0]
        val pixels = frame.fill(plane.buffer, image.width, image.height, plane.rowStride, image.imageInfo.rotationDegrees)
        val w = frame.width
        val h = frame.height
        val bmp = bitmap?.takeIf { it.width == w && it.height == h }
            ?: Bitmap.createBitmap(w, h, Bitmap.Config.ARGB_8888).also { bitmap = it }
        bmp.setPixels(pixels, 0, w, 0, 0, w, h)
        val t1 = System.nanoTime()
        val detected = Tasks.await(detector.process(InputImage.fromBitmap(bmp, 0))).map {
            fun eye(type: Int) = it.getLandmark(type)?.position?.let { p -> Point(p.x.toDouble(), p.y.toDouble()) }
            Face(
                Box(it.boundingBox.left.toDouble(), it.boundingBox.top.toDouble(), it.boundingBox.right.toDouble(), it.boundingBox.bottom.toDouble()),
                rightEye = eye(FaceLandmark.RIGHT_EYE), leftEye = eye(FaceLandmark.LEFT_EYE),
            )
        }
        // a model that turns its crop with the eyes cannot read a face whose eyes ML Kit did not place
        val usable = if (pipeline.meta.input.crop.rotate == Rotate.NONE) detected else detected.filter { it.rightEye != null && it.leftEye != null }
        val faces = detected.map { it.box }
        val t2 = System.nanoTime()
        val est = estimator
        val prepared = if (est == null) null else pipeline.prepare(pixels, w, h, usable)
        val t3 = System.nanoTime()
        if (prepared == null || est == null) {
            stats.add(t3, detectNanos = t2 - t1, cropNanos = null, inferNanos = null)
            onResult(FrameResult(w, h, faces, null, null, null, stats.summary()))
            return
        }
        // the model reads the pose on its (possibly turned) crop; smoothing and drawing want the frame's
        val pose = pipeline.smooth(pipeline.inFrame(est.estimate(prepared.tensor), prepared), t3)
        // crop = frame conversion + crop + input tensor; infer = the estimator's own model time
        stats.add(System.nanoTime(), detectNanos = t2 - t1, cropNanos = (t1 - t0) + (t3 - t2), inferNanos = est.lastInferenceTimeNanos())
        onResult(FrameResult(w, h, faces, prepared.face.box, pose, pipeline.axes(pose, prepared.square), stats.summary()))
    }

    override fun close() {
        detector.close()
        estimator?.close()
        estimator = null
        bitmap?.recycle()
        bitmap = null
    }

    companion object {
        const val TAG = "HeadPose"
    }
}
