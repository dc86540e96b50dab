// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real LiteRT GPU API (com.google.ai.edge.litert:litert-gpu); every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package org.tensorflow.lite.gpu;

import org.tensorflow.lite.Delegate;

public class GpuDelegate implements Delegate {
    public GpuDelegate() { throw new RuntimeException("Stub!"); }
    @Override
    public long getNativeHandle() { throw new RuntimeException("Stub!"); }
    @Override
    public void close() { throw new RuntimeException("Stub!"); }
}
