// The tfcompress Android demo: open this folder in Android Studio (it needs Google's Maven for the
// Android Gradle Plugin and LiteRT). `:core` is plain Kotlin/JVM, tested without Android (docs/android.md).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "tfcompress-android-demo"
include(":app", ":core")
