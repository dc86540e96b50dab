// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real Android SDK; every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package android.widget;

public abstract class CompoundButton extends Button {
    public boolean isChecked() { throw new RuntimeException("Stub!"); }
    public void setChecked(boolean checked) { throw new RuntimeException("Stub!"); }
}
