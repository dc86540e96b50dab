// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real LiteRT API (com.google.ai.edge.litert:litert); every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package org.tensorflow.lite;

public interface Tensor {
    DataType dataType();
    int[] shape();
    int numBytes();
}
