// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real Android SDK; every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package android.os;

/** Not in the Android SDK: makes the stubs' static fields non-constant, as the real ones are to the compiler. */
final class Stub {
    static String string() { throw new RuntimeException("Stub!"); }
    static String[] strings() { throw new RuntimeException("Stub!"); }
    static int integer() { throw new RuntimeException("Stub!"); }
}
