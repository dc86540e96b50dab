// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real Android SDK; every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package android.provider;

public final class MediaStore {
    public static final String ACTION_IMAGE_CAPTURE = "android.media.action.IMAGE_CAPTURE";
}
