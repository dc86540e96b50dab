// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real Android SDK; every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package android.os;

public class BatteryManager {
    public static final String EXTRA_VOLTAGE = "voltage";
    public static final String EXTRA_PLUGGED = "plugged";
    public static final int BATTERY_PROPERTY_CURRENT_NOW = 2;

    public int getIntProperty(int id) { throw new RuntimeException("Stub!"); }
}
