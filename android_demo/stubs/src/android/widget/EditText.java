// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real Android SDK; every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package android.widget;

import android.text.Editable;

public class EditText extends TextView {
    @Override
    public Editable getText() { throw new RuntimeException("Stub!"); }
}
