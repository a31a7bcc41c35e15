package org.tordistill.headpose.app

import android.graphics.Bitmap
import android.util.Log
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import com.google.android.gms.tasks.Tasks
import com.google.mlkit.vision.common.InputImage
import com.google.mlkit.vision.face.Face as MlKitFace
import com.google.mlkit.vision.face.FaceDetection
import com.google.mlkit.vision.face.FaceDetector
import com.google.mlkit.vision.face.FaceDetectorOptions
import com.google.mlkit.vision.face.FaceLandmark
import org.tordistill.headpose.core.Box
import org.tordistill.headpose.core.Face
import org.tordistill.headpose.core.FaceSelection
import org.tordistill.headpose.core.FrameStats
import org.tordistill.headpose.core.Point
import org.tordistill.headpose.core.PosePipeline
import org.tordistill.headpose.core.Rotate
import org.tordistill.headpose.core.SecondLook
import org.tordistill.headpose.core.UprightFrame

/**
 * One camera frame -> [FrameResult], on CameraX's analysis thread: the RGBA rows turned upright (the
 * sensor rotation applied, so any device orientation works) into a reused pixel array and bitmap, ML
 * Kit faces with their eye landmarks, where the model's crop spec says so a second, levelled look at
 * the largest face (ML Kit again on the core's turned patch around it, [SecondLook], as the Python side
 * frames its faces), the core's crop (turned with the eyes where the crop spec says so) and tensor for
 * that face (reused buffers too), the estimator, smoothing and axes, and the speed figures. [estimator] is read and swapped on this thread only.
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
    // the second look, for a model whose crop spec's boxes come from one (its patch and bitmap are kept)
    private val secondLook: SecondLook? = if (pipeline.meta.input.crop.secondLook) SecondLook() else null
    private var patchBitmap: Bitmap? = null
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
        val detected = Tasks.await(detector.process(InputImage.fromBitmap(bmp, 0))).map(::face)
        val crop = pipeline.meta.input.crop
        // a model that turns its crop with the eyes, or whose faces are looked at again levelled by their
        // eyes, cannot read a face whose eyes ML Kit did not place
        val usable = if (crop.rotate == Rotate.NONE && !crop.secondLook) detected else detected.filter(::hasEyes)
        val faces = detected.map { it.box }
        val est = estimator
        // the second look at the face prepare would pick (the largest usable one), counted in detect
        val look = secondLook
        val framed = if (look == null || est == null) usable else FaceSelection.largestFace(usable)?.let { listOf(lookAgain(look, pixels, w, h, it)) } ?: usable
        val t2 = System.nanoTime()
        val prepared = if (est == null) null else pipeline.prepare(pixels, w, h, framed)
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

    /** An ML Kit face as the core's: its box and the subject's right and left eye centres, where given. */
    private fun face(f: MlKitFace): Face {
        fun eye(type: Int) = f.getLandmark(type)?.position?.let { p -> Point(p.x.toDouble(), p.y.toDouble()) }
        val b = f.boundingBox
        return Face(Box(b.left.toDouble(), b.top.toDouble(), b.right.toDouble(), b.bottom.toDouble()),
            rightEye = eye(FaceLandmark.RIGHT_EYE), leftEye = eye(FaceLandmark.LEFT_EYE))
    }

    private fun hasEyes(f: Face) = f.rightEye != null && f.leftEye != null

    /**
     * [first] as the second look frames it (pipeline/faces/locate.py second_look): ML Kit again on the
     * patch of twice its box turned level by its eyes; the face nearest the patch centre with both eyes,
     * mapped back into the frame. [first] itself when the patch shows no such face.
     */
    private fun lookAgain(look: SecondLook, pixels: IntArray, w: Int, h: Int, first: Face): Face {
        val region = SecondLook.region(first)
        val side = look.side
        val patch = look.patch(pixels, w, h, region)
        val bmp = patchBitmap ?: Bitmap.createBitmap(side, side, Bitmap.Config.ARGB_8888).also { patchBitmap = it }
        bmp.setPixels(patch, 0, side, 0, 0, side, side)
        val found = Tasks.await(detector.process(InputImage.fromBitmap(bmp, 0))).map(::face).filter(::hasEyes)
        return SecondLook.nearest(found, side)?.let { SecondLook.fromPatch(it, region, side) } ?: first
    }

    override fun close() {
        detector.close()
        estimator?.close()
        estimator = null
        bitmap?.recycle()
        bitmap = null
        patchBitmap?.recycle()
        patchBitmap = null
    }

    companion object {
        const val TAG = "HeadPose"
    }
}
