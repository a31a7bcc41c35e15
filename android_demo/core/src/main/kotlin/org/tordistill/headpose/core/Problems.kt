package org.tordistill.headpose.core

/**
 * Which problem the status line shows. A model load error stays until a model loads (camera frames
 * keep arriving and must not overwrite it); an analysis error shows for [holdNanos] after it happened,
 * so that one bad frame is readable and a recurring one stays up. Written from the analysis thread,
 * read from any: the fields are volatile.
 */
class Problems(private val holdNanos: Long = 3_000_000_000L) {
    @Volatile private var load: String? = null
    @Volatile private var analysis: String? = null
    @Volatile private var analysisAt = 0L

    fun loadFailed(message: String) {
        load = message
    }

    fun loaded() {
        load = null
    }

    fun analysisFailed(message: String, nowNanos: Long) {
        analysis = message
        analysisAt = nowNanos
    }

    /** The message to show now, or null. */
    fun current(nowNanos: Long): String? = load ?: analysis?.takeIf { nowNanos - analysisAt <= holdNanos }
}
