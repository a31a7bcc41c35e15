package org.tordistill.headpose.app

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import org.tordistill.headpose.core.ViewMapping

/**
 * Draws the last [FrameResult] over the preview: every face box (thin), the estimated face (bold), and
 * the head axes (x red, y green, z blue, farthest first). Image -> view mapping (fill-centre, mirrored
 * for the front camera) comes from the core's [ViewMapping].
 */
class OverlayView(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    private var frame: FrameResult? = null
    private val colours = intArrayOf(Color.rgb(230, 30, 30), Color.rgb(30, 200, 30), Color.rgb(40, 80, 255))
    private val boxPaint = Paint().apply { style = Paint.Style.STROKE; strokeWidth = 2f; color = Color.LTGRAY }
    private val selectedPaint = Paint(boxPaint).apply { strokeWidth = 5f; color = Color.YELLOW }
    private val axisPaint = Paint().apply { strokeWidth = 8f; strokeCap = Paint.Cap.ROUND; isAntiAlias = true }

    fun show(result: FrameResult?) {
        frame = result
        invalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val f = frame ?: return
        val map = ViewMapping(f.imageWidth, f.imageHeight, width, height, mirrored = true)
        for (face in f.faces) {
            val b = map.map(face)
            canvas.drawRect(b.left.toFloat(), b.top.toFloat(), b.right.toFloat(), b.bottom.toFloat(),
                if (face == f.selected) selectedPaint else boxPaint)
        }
        val axes = f.axes ?: return
        val c = map.map(axes.center)
        for (k in axes.drawOrder) {
            val e = map.map(axes.ends[k])
            axisPaint.color = colours[k]
            canvas.drawLine(c.x.toFloat(), c.y.toFloat(), e.x.toFloat(), e.y.toFloat(), axisPaint)
        }
    }
}
