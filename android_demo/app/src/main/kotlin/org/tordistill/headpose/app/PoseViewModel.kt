package org.tordistill.headpose.app

import android.app.Application
import android.util.Log
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.resolutionselector.AspectRatioStrategy
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.SavedStateHandle
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import org.tordistill.headpose.core.ModelMeta
import org.tordistill.headpose.core.PosePipeline
import org.tordistill.headpose.core.Problems
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Owns the model meta, the analyzer, its estimator and single analysis thread, and the screen state.
 * The estimator belongs here, not to the activity: a rotation keeps this view model (and the loaded
 * model), and after process death a new view model loads the model again, with the accelerator saved
 * in [SavedStateHandle]. Estimators are created, swapped and closed on the analysis thread, so
 * inference never runs on the main thread and never races a close.
 */
class PoseViewModel(app: Application, private val saved: SavedStateHandle) : AndroidViewModel(app) {
    private val _state = MutableStateFlow<UiState>(UiState.NeedsPermission)
    val state: StateFlow<UiState> = _state

    val analysisExecutor: ExecutorService = Executors.newSingleThreadExecutor()
    private val problems = Problems()

    // Written on the analysis thread (ranOn, lastFrame) or the main thread (permission), read on both.
    @Volatile private var ranOn = ""
    @Volatile private var lastFrame: FrameResult? = null
    @Volatile private var permission: Boolean? = null // null: not answered yet
    private var requested: AcceleratorChoice? = null // main thread only

    private val meta: ModelMeta? = try {
        ModelMeta.parse(app.assets.open(META_ASSET).bufferedReader().use { it.readText() })
    } catch (e: Exception) {
        Log.e(FrameAnalyzer.TAG, "no usable $META_ASSET", e)
        _state.value = UiState.Error("No usable model in assets: ${e.message}. Run ./gradlew :app:importModel -PmodelDir=... (see docs/android.md).")
        null
    }

    val analyzer: FrameAnalyzer? = meta?.let { m ->
        FrameAnalyzer(PosePipeline(m), onResult = { lastFrame = it; publish() }, onError = { e ->
            problems.analysisFailed("Frame analysis failed: ${e.javaClass.simpleName}: ${e.message}", System.nanoTime())
            publish()
        })
    }

    /** The accelerator asked for (CPU at first start; the saved one after process death). */
    val accelerator: AcceleratorChoice
        get() = saved.get<String>(KEY_ACCELERATOR)?.let { AcceleratorChoice.valueOf(it) } ?: AcceleratorChoice.CPU

    init {
        selectAccelerator(accelerator) // every new view model loads the model: first start and process death alike
    }

    fun onPermission(granted: Boolean) {
        permission = granted
        publish()
    }

    /** Load the model for [choice] unless it is the one already loaded or loading. */
    fun selectAccelerator(choice: AcceleratorChoice) {
        val m = meta ?: return
        val a = analyzer ?: return
        if (choice == requested) return
        requested = choice
        saved[KEY_ACCELERATOR] = choice.name
        analysisExecutor.execute {
            a.estimator?.close()
            a.estimator = null
            ranOn = "" // nothing runs until the new estimator is built
            publish()
            try {
                val est = LiteRtPoseEstimator.create(getApplication<Application>().assets, m, choice)
                a.estimator = est
                ranOn = est.ranOn
                problems.loaded()
            } catch (e: Exception) {
                Log.e(FrameAnalyzer.TAG, "LiteRT could not load the model", e)
                problems.loadFailed("LiteRT could not load the model: ${e.message}")
            }
            publish()
        }
    }

    /** The screen state from the current facts; a load error stays in it until a model loads. */
    private fun publish() {
        if (meta == null) return // the Error state set at construction stays
        _state.value = when (permission) {
            null -> UiState.NeedsPermission
            false -> UiState.PermissionDenied
            true -> UiState.Running(ranOn, lastFrame, problems.current(System.nanoTime()))
        }
    }

    fun analysisUseCase(): ImageAnalysis = ImageAnalysis.Builder()
        .setResolutionSelector(SAME_ASPECT)
        .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
        .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
        .build()
        .also { use -> analyzer?.let { use.setAnalyzer(analysisExecutor, it) } }

    companion object {
        const val META_ASSET = "model_meta.json"
        private const val KEY_ACCELERATOR = "accelerator"

        /** Preview and analysis share one aspect ratio, so the overlay's fill-centre mapping lines up. */
        val SAME_ASPECT: ResolutionSelector = ResolutionSelector.Builder()
            .setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY).build()
    }

    override fun onCleared() {
        analysisExecutor.execute { analyzer?.close() }
        analysisExecutor.shutdown()
    }
}
