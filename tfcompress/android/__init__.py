"""The Android demo app's Python side: `tfcompress android-export`, and what its checks run here.

    fit.py        does a .tflite fit the app? (the rules of the app's Kotlin core, checked before copying)
    export.py     export_to_app: model, sidecar and labels into android_demo/app/src/main/assets, atomically
    project.py    the app's folder and the settings its Gradle build declares (package, SDK levels, noCompress)
    golden.py     tfcompress's own preprocessing / quantization, to compare with the Kotlin core byte for byte
    toolchain.py  kotlinc, javac, java and aapt2: where .ci/android_setup.sh installs them and how they are run

The app itself (android_demo/) is built in Android Studio: Google's Maven, which has the Android Gradle Plugin
and LiteRT, is out of reach of the machines that run tfcompress's tests (docs/android.md).
"""

from tfcompress.android.export import AndroidExport, export_to_app
from tfcompress.android.fit import APP_DTYPES, AppModel, check_model

__all__ = ["APP_DTYPES", "AndroidExport", "AppModel", "check_model", "export_to_app"]
