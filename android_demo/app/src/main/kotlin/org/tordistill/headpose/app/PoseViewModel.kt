package org.tordistill.headpose.app

import android.app.Application
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.resolutionselector.AspectRatioStrategy
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.lifecycle.AndroidViewModel
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import org.tordistill.headpose.core.ModelMeta
import org.tordistill.headpose.core.PosePipeline
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Owns the model meta, the analyzer and its single analysis thread, and the screen state. Estimators
 * are created, swapped and closed on the analysis thread, so inference never runs on the main thread
 * and never races a close.
 */
class PoseViewModel(app: Application) : AndroidViewModel(app) {
    private val _state = MutableStateFlow<UiState>(UiState.NeedsPermission)
    val state: StateFlow<UiState> = _state

    val analysisExecutor: ExecutorService = Executors.newSingleThreadExecutor()
    private var ranOn = ""

    private val meta: ModelMeta? = try {
        ModelMeta.parse(app.assets.open("model_meta.json").bufferedReader().use { it.readText() })
    } catch (e: Exception) {
        _state.value = UiState.Error("No usable model in assets (${e.message}). Run ./gradlew :app:importModel -PmodelDir=... (see docs/android.md).")
        null
    }

    val analyzer: FrameAnalyzer? = meta?.let { m ->
        FrameAnalyzer(PosePipeline(m)) { result -> _state.value = UiState.Running(ranOn, result) }
    }

    fun onPermission(granted: Boolean) {
        if (meta == null) return
        _state.value = if (granted) UiState.Running(ranOn, null) else UiState.PermissionDenied
    }

    fun selectAccelerator(choice: AcceleratorChoice) {
        val m = meta ?: return
        val a = analyzer ?: return
        analysisExecutor.execute {
            a.estimator?.close()
            a.estimator = null
            try {
                val est = LiteRtPoseEstimator.create(getApplication<Application>().assets, m, choice)
                ranOn = est.ranOn
                a.estimator = est
                _state.value = UiState.Running(ranOn, null)
            } catch (e: Exception) {
                _state.value = UiState.Error("LiteRT could not load the model: ${e.message}")
            }
        }
    }

    fun analysisUseCase(): ImageAnalysis = ImageAnalysis.Builder()
        .setResolutionSelector(SAME_ASPECT)
        .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
        .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
        .build()
        .also { use -> analyzer?.let { use.setAnalyzer(analysisExecutor, it) } }

    companion object {
        /** Preview and analysis share one aspect ratio, so the overlay's fill-centre mapping lines up. */
        val SAME_ASPECT: ResolutionSelector = ResolutionSelector.Builder()
            .setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY).build()
    }

    override fun onCleared() {
        analysisExecutor.execute { analyzer?.close() }
        analysisExecutor.shutdown()
    }
}
