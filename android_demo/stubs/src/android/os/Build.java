// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real Android SDK; every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package android.os;

public class Build {
    public static final String MANUFACTURER = Stub.string();
    public static final String MODEL = Stub.string();
    public static final String SOC_MANUFACTURER = Stub.string();
    public static final String SOC_MODEL = Stub.string();
    public static final String[] SUPPORTED_ABIS = Stub.strings();

    public static class VERSION {
        public static final int SDK_INT = Stub.integer();
    }

    public static class VERSION_CODES {
        public static final int O_MR1 = 27;
        public static final int S = 31;
    }
}
