package org.tordistill.headpose.app

import org.tordistill.headpose.core.HeadPose
import org.tordistill.headpose.core.InputTensor

/** Runs the student on one input tensor. One implementation per runtime; not thread-safe: one caller thread. */
interface PoseEstimator : AutoCloseable {
    /** Where it actually runs, e.g. "CPU (XNNPACK)" or "GPU"; shown in the UI. */
    val ranOn: String

    fun estimate(input: InputTensor): HeadPose

    /** Wall time of the last [estimate]'s model run (buffer write, run, read), in nanoseconds. */
    fun lastInferenceTimeNanos(): Long
}
