// STUB for compile checks only (tests/test_android_app.py): the signatures MainActivity calls, mirroring the
// real Android SDK; every body throws. Never packaged: Android Studio builds against the real android.jar / LiteRT AAR.
package android.content;

import android.content.pm.PackageManager;
import android.content.res.AssetManager;
import java.io.File;

public abstract class Context {
    public abstract AssetManager getAssets();
    public abstract ContentResolver getContentResolver();
    public abstract PackageManager getPackageManager();
    public abstract String getPackageName();
    public abstract File getExternalFilesDir(String type);
    public abstract File getFilesDir();
    public abstract Intent registerReceiver(BroadcastReceiver receiver, IntentFilter filter);
    public final <T> T getSystemService(Class<T> serviceClass) { throw new RuntimeException("Stub!"); }
    public final String getString(int resId) { throw new RuntimeException("Stub!"); }
    public final String getString(int resId, Object... formatArgs) { throw new RuntimeException("Stub!"); }
}
