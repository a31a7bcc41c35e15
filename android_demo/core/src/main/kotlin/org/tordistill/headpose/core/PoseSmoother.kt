package org.tordistill.headpose.core

/**
 * Optional temporal smoothing of the live estimate: an exponential moving average per angle with
 * weight alpha on the new value (1 = no smoothing). Frames more than maxGap apart (face lost, app
 * paused) restart from the new value instead of dragging the old one in. The constants come from the
 * model's meta ([SmoothingSpec]), the same filter `python -m pipeline predict` applies to video.
 */
class PoseSmoother(spec: SmoothingSpec = SmoothingSpec.DEFAULT) {
    private val alpha = spec.alpha
    private val maxGapNanos = (spec.maxGapSeconds * 1e9).toLong()

    private var last: HeadPose? = null
    private var lastTime: Long = 0

    fun update(pose: HeadPose, timeNanos: Long): HeadPose {
        val prev = last
        val out = if (prev == null || timeNanos - lastTime > maxGapNanos || timeNanos < lastTime) pose else HeadPose(
            prev.yaw + alpha * (pose.yaw - prev.yaw),
            prev.pitch + alpha * (pose.pitch - prev.pitch),
            prev.roll + alpha * (pose.roll - prev.roll),
        )
        last = out
        lastTime = timeNanos
        return out
    }

    fun reset() {
        last = null
    }
}
