package org.tordistill.headpose.app

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.view.View
import android.widget.Button
import android.widget.RadioGroup
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.activity.viewModels
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import androidx.lifecycle.Lifecycle
import androidx.lifecycle.lifecycleScope
import androidx.lifecycle.repeatOnLifecycle
import kotlinx.coroutines.launch

/** Wires views, permission and CameraX to [PoseViewModel]; all decisions live in the view model and the core. */
class MainActivity : AppCompatActivity() {
    private val vm: PoseViewModel by viewModels()

    private val permission = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        vm.onPermission(granted)
        if (granted) startCamera()
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val status = findViewById<TextView>(R.id.status)
        val overlay = findViewById<OverlayView>(R.id.overlay)
        val grant = findViewById<Button>(R.id.grant)
        // The view model owns the model and remembers the choice (also across process death): show it,
        // then listen; re-selecting the loaded accelerator is a no-op.
        val accelerator = findViewById<RadioGroup>(R.id.accelerator)
        accelerator.check(if (vm.accelerator == AcceleratorChoice.GPU) R.id.gpu else R.id.cpu)
        accelerator.setOnCheckedChangeListener { _, id ->
            vm.selectAccelerator(if (id == R.id.gpu) AcceleratorChoice.GPU else AcceleratorChoice.CPU)
        }
        grant.setOnClickListener { permission.launch(Manifest.permission.CAMERA) }
        lifecycleScope.launch {
            repeatOnLifecycle(Lifecycle.State.STARTED) {
                vm.state.collect { state ->
                    status.text = StatusText.of(state)
                    grant.visibility = if (state is UiState.PermissionDenied) View.VISIBLE else View.GONE
                    overlay.show((state as? UiState.Running)?.frame)
                }
            }
        }
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            vm.onPermission(true)
            startCamera()
        } else {
            permission.launch(Manifest.permission.CAMERA)
        }
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val preview = Preview.Builder().setResolutionSelector(PoseViewModel.SAME_ASPECT).build().also {
                it.setSurfaceProvider(findViewById<PreviewView>(R.id.preview).surfaceProvider)
            }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_FRONT_CAMERA, preview, vm.analysisUseCase())
        }, ContextCompat.getMainExecutor(this))
    }
}
