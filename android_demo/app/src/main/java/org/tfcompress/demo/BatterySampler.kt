package org.tfcompress.demo

import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.os.BatteryManager
import org.tfcompress.demo.core.BatterySample

/** Whether the phone is plugged in, and the battery voltage (mV, -1 when not reported). */
data class BatteryStatus(val charging: Boolean, val voltageMv: Int)

/**
 * Reads `BatteryManager.BATTERY_PROPERTY_CURRENT_NOW` every [periodMs] on a background thread while the
 * benchmark runs; the core ([org.tfcompress.demo.core.Energy]) turns the readings into energy per inference.
 * The voltage changes slowly and is read from the sticky `ACTION_BATTERY_CHANGED` broadcast at the start.
 */
class BatterySampler(private val context: Context, private val periodMs: Long = 20) {
    private val manager: BatteryManager? = context.getSystemService(BatteryManager::class.java)
    private val samples = ArrayList<BatterySample>()
    @Volatile private var running = false
    private var thread: Thread? = null

    fun status(): BatteryStatus {
        val battery: Intent? = context.registerReceiver(null, IntentFilter(Intent.ACTION_BATTERY_CHANGED))
        val plugged = battery?.getIntExtra(BatteryManager.EXTRA_PLUGGED, 0) ?: 0
        val voltage = battery?.getIntExtra(BatteryManager.EXTRA_VOLTAGE, -1) ?: -1
        return BatteryStatus(plugged != 0, voltage)
    }

    fun start() {
        check(!running) { "already sampling" }
        synchronized(samples) { samples.clear() }
        val voltage = status().voltageMv
        val start = System.nanoTime()
        running = true
        val worker = Thread {
            while (running) {
                val current = manager?.getIntProperty(BatteryManager.BATTERY_PROPERTY_CURRENT_NOW) ?: Int.MIN_VALUE
                val sample = BatterySample((System.nanoTime() - start) / 1e6, current.toLong(), voltage)
                synchronized(samples) { samples.add(sample) }
                try {
                    Thread.sleep(periodMs)
                } catch (e: InterruptedException) {
                    break
                }
            }
        }
        worker.isDaemon = true
        worker.start()
        thread = worker
    }

    fun stop(): List<BatterySample> {
        running = false
        thread?.join()
        thread = null
        return synchronized(samples) { samples.toList() }
    }

    /** Readings while the app does nothing for `ms`: the phone's baseline draw. */
    fun sampleIdle(ms: Long): List<BatterySample> {
        start()
        Thread.sleep(ms)
        return stop()
    }
}
