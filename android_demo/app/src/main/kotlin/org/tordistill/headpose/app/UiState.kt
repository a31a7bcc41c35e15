package org.tordistill.headpose.app

import org.tordistill.headpose.core.AxesProjection
import org.tordistill.headpose.core.Box
import org.tordistill.headpose.core.FrameStats
import org.tordistill.headpose.core.HeadPose

/** Which LiteRT accelerator to ask for. */
enum class AcceleratorChoice { CPU, GPU }

/** One analysed frame, in upright image coordinates (what the detector and the model saw). */
data class FrameResult(
    val imageWidth: Int,
    val imageHeight: Int,
    val faces: List<Box>,
    val selected: Box?,
    val pose: HeadPose?,
    val axes: AxesProjection?,
    val stats: FrameStats.Summary,
)

/** Everything the screen shows. */
sealed interface UiState {
    data object NeedsPermission : UiState
    data object PermissionDenied : UiState
    data class Error(val message: String) : UiState
    /** The camera runs; [ranOn] is empty while no model is loaded; [problem] is a load or analysis error to keep on screen. */
    data class Running(val ranOn: String, val frame: FrameResult?, val problem: String? = null) : UiState
}
