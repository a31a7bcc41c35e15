package org.tordistill.headpose.core

import kotlin.math.asin
import kotlin.math.atan2
import kotlin.math.cos
import kotlin.math.sin

/** The head's x (red), y (green), z (blue) axes projected on the image, and the order to draw them in. */
data class AxesProjection(val center: Point, val ends: List<Point>, val drawOrder: List<Int>)

/**
 * The pose convention of docs/data.md, as pipeline/data/visualize.py draws it: camera x right, y up, z towards
 * the viewer; a head vector h appears as R h with R = Rx(-pitch) Ry(-yaw) Rz(-roll). Axis k of the head
 * is column k of R; its image direction is (R[0][k], -R[1][k]) (image y points down), drawn farthest
 * (smallest R[2][k]) first so the nearest axis stays on top.
 */
object PoseAxes {
    fun rotation(pose: HeadPose): Array<DoubleArray> {
        val x = Math.toRadians(-pose.pitch)
        val y = Math.toRadians(-pose.yaw)
        val z = Math.toRadians(-pose.roll)
        val rx = arrayOf(doubleArrayOf(1.0, 0.0, 0.0), doubleArrayOf(0.0, cos(x), -sin(x)), doubleArrayOf(0.0, sin(x), cos(x)))
        val ry = arrayOf(doubleArrayOf(cos(y), 0.0, sin(y)), doubleArrayOf(0.0, 1.0, 0.0), doubleArrayOf(-sin(y), 0.0, cos(y)))
        val rz = arrayOf(doubleArrayOf(cos(z), -sin(z), 0.0), doubleArrayOf(sin(z), cos(z), 0.0), doubleArrayOf(0.0, 0.0, 1.0))
        return times(times(rx, ry), rz)
    }

    /**
     * Axis end points for a face whose crop is centred at [center], each [length] pixels long in the
     * image the model saw. With [mirrored] (a front-camera preview shown as a mirror) x is flipped about
     * the centre, which is the same as drawing (-yaw, pitch, -roll).
     */
    fun project(pose: HeadPose, center: Point, length: Double, mirrored: Boolean = false): AxesProjection {
        val r = rotation(pose)
        val sign = if (mirrored) -1.0 else 1.0
        val ends = (0 until 3).map { k -> Point(center.x + sign * length * r[0][k], center.y + length * -r[1][k]) }
        val order = (0 until 3).sortedBy { r[2][it] }
        return AxesProjection(center, ends, order)
    }

    /**
     * The pose in the frame of a face whose crop was turned by [angleDeg] (clockwise on screen): the frame
     * is the crop turned clockwise, so R becomes Rz(-angle) R, read back into yaw, pitch and roll as
     * pipeline/data/transforms.py rotate_pose does (yaw in [-90, 90]).
     */
    fun turned(pose: HeadPose, angleDeg: Double): HeadPose {
        if (angleDeg == 0.0) return pose
        val t = Math.toRadians(-angleDeg)
        val rz = arrayOf(doubleArrayOf(cos(t), -sin(t), 0.0), doubleArrayOf(sin(t), cos(t), 0.0), doubleArrayOf(0.0, 0.0, 1.0))
        val r = times(rz, rotation(pose))
        val b = asin(r[0][2].coerceIn(-1.0, 1.0))
        val a = atan2(-r[1][2], r[2][2])
        val c = atan2(-r[0][1], r[0][0])
        return HeadPose(yaw = -Math.toDegrees(b), pitch = -Math.toDegrees(a), roll = -Math.toDegrees(c))
    }

    private fun times(a: Array<DoubleArray>, b: Array<DoubleArray>): Array<DoubleArray> =
        Array(3) { i -> DoubleArray(3) { j -> a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j] } }
}
