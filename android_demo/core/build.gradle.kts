// Pure Kotlin/JVM: no Android dependency, so its tests run anywhere (also without Gradle: ../test-core.sh).
plugins {
    alias(libs.plugins.kotlin.jvm)
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    testImplementation(libs.junit)
}
