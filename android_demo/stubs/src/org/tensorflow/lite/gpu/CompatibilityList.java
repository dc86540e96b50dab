// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real LiteRT GPU API (com.google.ai.edge.litert:litert-gpu); every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package org.tensorflow.lite.gpu;

import java.io.Closeable;

public class CompatibilityList implements Closeable {
    public CompatibilityList() { throw new RuntimeException("Stub!"); }
    public boolean isDelegateSupportedOnThisDevice() { throw new RuntimeException("Stub!"); }
    @Override
    public void close() { throw new RuntimeException("Stub!"); }
}
