plugins {
    alias(libs.plugins.android.application) // AGP 9 compiles Kotlin itself (built-in Kotlin)
}

android {
    namespace = "org.tordistill.headpose.app"
    compileSdk = libs.versions.compileSdk.get().toInt()

    defaultConfig {
        applicationId = "org.tordistill.headpose.app"
        minSdk = libs.versions.minSdk.get().toInt()
        targetSdk = libs.versions.targetSdk.get().toInt()
        versionCode = 1
        versionName = "0.1.0"
    }
    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    buildFeatures {
        viewBinding = false
    }
    androidResources {
        noCompress += "tflite" // CompiledModel maps the model from the APK
    }
}

dependencies {
    implementation(project(":core"))
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.activity.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.androidx.lifecycle.viewmodel.ktx)
    implementation(libs.androidx.lifecycle.viewmodel.savedstate) // the accelerator choice survives process death
    implementation(libs.androidx.lifecycle.runtime.ktx)
    implementation(libs.camera.core)
    implementation(libs.camera.camera2)
    implementation(libs.camera.lifecycle)
    implementation(libs.camera.view)
    implementation(libs.litert)
    implementation(libs.litert.gpu) // without it an Accelerator.GPU request fails
    implementation(libs.mlkit.face.detection) // bundled: the detector model ships in the APK
    implementation(libs.kotlinx.coroutines.android)
}

/**
 * Copies an exported TFLite student and its model_meta.json into the app's assets:
 *   ./gradlew :app:importModel -PmodelDir=/path/to/runs/face_pose/export-<hash>/tflite_int8
 * The folder must hold exactly one .tflite and model_meta.json (what the export stage writes).
 */
val importModel by tasks.registering(Copy::class) {
    val dir = providers.gradleProperty("modelDir").orNull
        ?: throw GradleException("pass -PmodelDir=<run>/export-<hash>/tflite_<precision> (a folder with model_meta.json)")
    val src = file(dir)
    doFirst {
        if (!src.resolve("model_meta.json").isFile) throw GradleException("$src has no model_meta.json; give a tflite_* folder of an export stage")
        val models = src.listFiles { f -> f.name.endsWith(".tflite") }.orEmpty()
        if (models.size != 1) throw GradleException("$src must hold exactly one .tflite, found ${models.size}")
    }
    from(src) {
        include("*.tflite", "model_meta.json")
        rename(".*\\.tflite", "model.tflite")
    }
    into(layout.projectDirectory.dir("src/main/assets"))
}
