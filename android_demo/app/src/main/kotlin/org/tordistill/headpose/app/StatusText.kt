package org.tordistill.headpose.app

import java.util.Locale

/** The status line for a [UiState]: values, speed, what ran, or why nothing runs. */
object StatusText {
    fun of(state: UiState): String = when (state) {
        UiState.NeedsPermission -> "Waiting for camera permission"
        UiState.PermissionDenied -> "Camera permission refused: grant it to see the demo"
        is UiState.Error -> state.message
        is UiState.Running -> {
            val f = state.frame
            val where = "on ${state.ranOn.ifEmpty { if (state.problem != null) "(no model)" else "(loading)" }}"
            val main = when {
                f == null -> "Starting $where"
                f.pose == null -> (if (f.faces.isEmpty()) "No face $where" else "Face found, no estimate $where") + "\n" + f.stats.text()
                else -> String.format(
                    Locale.US, "yaw %6.1f  pitch %6.1f  roll %6.1f deg\n%s %s%s",
                    f.pose.yaw, f.pose.pitch, f.pose.roll, f.stats.text(), where,
                    if (f.faces.size > 1) "  (${f.faces.size} faces: largest used)" else "",
                )
            }
            state.problem?.let { "$it\n$main" } ?: main
        }
    }
}
