import org.jetbrains.kotlin.gradle.dsl.JvmTarget

// Plain Kotlin/JVM, no Android: what the app computes around LiteRT (sidecar, preprocessing, quantization,
// ranking, statistics, the benchmark JSON). CI compiles it with kotlinc and runs CoreTests on the JVM.
plugins {
    alias(libs.plugins.kotlin.jvm)
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

// `./gradlew :core:coreTests`: the same tests CI runs (JUnit is not used: it cannot be fetched there).
tasks.register<JavaExec>("coreTests") {
    classpath = sourceSets["test"].runtimeClasspath
    mainClass.set("org.tfcompress.demo.core.CoreTests")
}
