package org.tfcompress.demo.core

/**
 * One battery reading: when (ms since sampling began), `BatteryManager.BATTERY_PROPERTY_CURRENT_NOW` as the phone
 * reports it (documented as microamperes, negative while discharging; some phones report mA, or discharge as
 * positive), and the battery voltage in mV (`EXTRA_VOLTAGE`).
 */
data class BatterySample(val atMs: Double, val currentNow: Long, val voltageMv: Int)

/** Energy of one benchmark run, from battery readings taken while it ran (and while the app sat idle before). */
data class EnergyStats(
    val samples: Int,
    val currentUnit: String,
    val dischargeMaMedian: Double,
    val voltageVMedian: Double,
    val powerMwMean: Double,
    val baselinePowerMwMean: Double?,
    val wallMs: Double,
    val mjPerInference: Double,
    val mjPerInferenceAboveBaseline: Double?,
)

/** [stats], or the reason there are none (`unavailable`): the benchmark JSON carries one or the other. */
data class EnergyResult(val stats: EnergyStats?, val unavailable: String?) {
    fun toJsonMap(): Map<String, Any?> {
        val s = stats ?: return linkedMapOf("unavailable" to (unavailable ?: "no battery readings"))
        return linkedMapOf(
            "samples" to s.samples,
            "current_unit" to s.currentUnit,
            "discharge_ma_median" to s.dischargeMaMedian,
            "voltage_v_median" to s.voltageVMedian,
            "power_mw_mean" to s.powerMwMean,
            "baseline_power_mw_mean" to s.baselinePowerMwMean,
            "wall_ms" to s.wallMs,
            "mj_per_inference" to s.mjPerInference,
            "mj_per_inference_above_baseline" to s.mjPerInferenceAboveBaseline,
        )
    }
}

/**
 * Battery readings -> energy per inference: mean power (|current| x voltage) over the timed runs, times their
 * wall time, divided by the runs. The whole phone draws that power (screen, radios, other apps), so the
 * idle baseline measured just before is also given, and the energy above it: the part the model costs.
 * A reading every few ms is more than most phones update CURRENT_NOW; short runs get few distinct values.
 */
object Energy {
    const val MIN_SAMPLES = 3

    /** |CURRENT_NOW| below this (10 mA in microamperes) is taken as mA: no phone runs a model on 10 mA. */
    const val MICROAMP_FLOOR = 10_000L

    fun summarize(
        during: List<BatterySample>,
        baseline: List<BatterySample>,
        runs: Int,
        wallMs: Double,
        charging: Boolean,
    ): EnergyResult {
        require(runs >= 1 && wallMs > 0.0) { "runs and wall time must be positive" }
        if (charging) {
            return EnergyResult(null, "the phone was charging, so battery current is not what it spent (unplug it; adb over Wi-Fi)")
        }
        val timed = usable(during)
        if (timed.size < MIN_SAMPLES) {
            return EnergyResult(
                null,
                "the phone gave ${timed.size} usable battery readings during the runs (needs $MIN_SAMPLES): " +
                    "BATTERY_PROPERTY_CURRENT_NOW or EXTRA_VOLTAGE is not reported, or the runs were too short",
            )
        }
        val idle = usable(baseline)
        val unitIsMa = median(timed.map { Math.abs(it.currentNow).toDouble() }) < MICROAMP_FLOOR
        val toMa = if (unitIsMa) 1.0 else 1000.0
        fun power(s: BatterySample) = Math.abs(s.currentNow) / toMa * (s.voltageMv / 1000.0)
        val powerMw = timed.map(::power).average()
        val baselineMw = if (idle.size >= MIN_SAMPLES) idle.map(::power).average() else null
        val perInference = wallMs / 1000.0 / runs
        return EnergyResult(
            EnergyStats(
                samples = timed.size,
                currentUnit = if (unitIsMa) "mA (values too small for the documented microamperes)" else "uA",
                dischargeMaMedian = median(timed.map { Math.abs(it.currentNow) / toMa }),
                voltageVMedian = median(timed.map { it.voltageMv / 1000.0 }),
                powerMwMean = powerMw,
                baselinePowerMwMean = baselineMw,
                wallMs = wallMs,
                mjPerInference = powerMw * perInference,
                mjPerInferenceAboveBaseline = baselineMw?.let { (powerMw - it) * perInference },
            ),
            null,
        )
    }

    /** Readings with a current (0 and Int.MIN_VALUE mean "not supported") and a voltage. */
    fun usable(samples: List<BatterySample>): List<BatterySample> = samples.filter {
        it.currentNow != 0L && it.currentNow != Int.MIN_VALUE.toLong() && it.currentNow != Long.MIN_VALUE &&
            it.voltageMv > 0
    }

    private fun median(values: List<Double>): Double = LatencyStats.percentile(values.sorted().toDoubleArray(), 50.0)
}
