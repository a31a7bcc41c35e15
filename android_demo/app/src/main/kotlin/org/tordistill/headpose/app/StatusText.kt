package org.tordistill.headpose.app

import java.util.Locale

/** The status line for a [UiState]: values, inference time, what ran, or why nothing runs. */
object StatusText {
    fun of(state: UiState): String = when (state) {
        UiState.NeedsPermission -> "Waiting for camera permission"
        UiState.PermissionDenied -> "Camera permission refused: grant it to see the demo"
        is UiState.Error -> state.message
        is UiState.Running -> {
            val f = state.frame
            val where = "on ${state.ranOn.ifEmpty { "(loading)" }}"
            when {
                f == null -> "Starting $where"
                f.faces.isEmpty() -> "No face $where"
                f.pose == null -> "Face found, model loading $where"
                else -> String.format(
                    Locale.US, "yaw %6.1f  pitch %6.1f  roll %6.1f deg\n%.2f ms %s%s",
                    f.pose.yaw, f.pose.pitch, f.pose.roll, f.inferenceMs ?: 0.0, where,
                    if (f.faces.size > 1) "  (${f.faces.size} faces: largest used)" else "",
                )
            }
        }
    }
}
