package org.tfcompress.demo.core

import java.io.File
import java.io.FileOutputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.security.MessageDigest
import java.time.Instant
import java.time.temporal.ChronoUnit

/** Where a benchmark runs; `jsonName` is what the benchmark file (and so the device profile) records. */
enum class DelegateKind(val label: String, val jsonName: String) {
    CPU("CPU, builtin kernels", "none"),
    XNNPACK("CPU, XNNPACK", "XNNPACK"),
    GPU("GPU delegate", "GPU"),
    NNAPI("NNAPI delegate", "NNAPI"),
}

/** The phone, as `Build` describes it. */
data class DeviceInfo(
    val manufacturer: String,
    val model: String,
    val soc: String?,
    val androidSdk: Int,
    val abi: String?,
)

/** One model's run: its timed invokes' statistics and, where the phone reports battery current, its energy. */
data class ModelRun(
    val name: String,
    val sha256: String,
    val warmup: Int,
    val runs: Int,
    val latency: LatencyStats,
    val energy: EnergyResult?,
)

/**
 * The `tfcompress.android_benchmark/1` document (docs/latency.md) that `tfcompress profile --import FILE
 * --model MODEL.tflite` turns into a device profile: one file per delegate and thread count.
 *
 * With an edge bundle, `kernels` (each one-op model's time less `overheadMs`, the per-invoke overhead) become
 * the phone's LUT entries; `models` become its whole-model observations. The energy goes inside
 * `models[].latency_ms` (`energy`), the one per-model object of the schema that may carry more than tfcompress
 * reads; the import accepts it and records latency only.
 */
data class BenchmarkReport(
    val appVersion: String,
    val device: DeviceInfo,
    val runtime: String,
    val delegate: DelegateKind,
    val threads: Int,
    val measuredAt: String,
    val models: List<ModelRun>,
    val overheadMs: Double? = null,
    val kernels: List<KernelResult> = emptyList(),
) {
    init {
        require(threads in 1..1024) { "threads must be 1..1024" }
        require(models.all { SHA256.matches(it.sha256) }) { "a model's sha256 is not 64 hex digits" }
        require(models.all { it.runs >= 1 && it.warmup >= 0 }) { "runs must be >= 1, warm-up >= 0" }
        require(overheadMs == null || (overheadMs.isFinite() && overheadMs >= 0.0)) { "overhead must be >= 0 ms" }
    }

    fun toJsonMap(): Map<String, Any?> = linkedMapOf<String, Any?>(
        "schema" to SCHEMA,
        "app_version" to Names.clean(appVersion, "unknown"),
        "device" to linkedMapOf(
            "manufacturer" to Names.clean(device.manufacturer, "unknown"),
            "model" to Names.clean(device.model, "unknown"),
            "soc" to device.soc?.let { Names.clean(it, "unknown") },
            "android_sdk" to device.androidSdk,
            "abi" to device.abi?.let { Names.clean(it, "unknown") },
        ).filterValues { it != null },
        "runtime" to runtime,
        "delegate" to delegate.jsonName,
        "threads" to threads,
        "measured_at" to measuredAt,
    ).also { doc ->
        overheadMs?.let { doc["overhead_ms"] = it }
        if (kernels.isNotEmpty()) {
            doc["kernels"] = kernels.map {
                linkedMapOf(
                    "digest" to it.kernel.digest,
                    "key" to it.kernel.key,
                    "ms" to maxOf(0.0, it.timing.medianMs - (overheadMs ?: 0.0)),
                    "raw_ms" to it.timing.medianMs,
                    "runs" to it.timing.runs,
                    "spread_ms" to it.timing.spreadMs,
                )
            }
        }
        doc["models"] = models.map { run ->
            val latency = linkedMapOf<String, Any?>(
                "median" to run.latency.medianMs,
                "p90" to run.latency.p90Ms,
                "mean" to run.latency.meanMs,
                "min" to run.latency.minMs,
                "max" to run.latency.maxMs,
                "count" to run.latency.count,
            )
            run.energy?.let { latency["energy"] = it.toJsonMap() }
            linkedMapOf(
                "name" to Names.clean(run.name, "model.tflite"),
                "sha256" to run.sha256.lowercase(),
                "warmup" to run.warmup,
                "runs" to run.runs,
                "latency_ms" to latency,
            )
        }
    }

    fun toJson(): String = Json.write(toJsonMap()) + "\n"

    /** `benchmark-<delegate>-t<threads>-<time>.json`: a name `adb pull` and a shell take as is. */
    fun fileName(): String =
        "benchmark-${delegate.jsonName}-t$threads-${measuredAt.replace(Regex("[^0-9A-Za-z]"), "")}.json"

    companion object {
        const val SCHEMA = "tfcompress.android_benchmark/1"
        private val SHA256 = Regex("[0-9a-fA-F]{64}")

        /** ISO-8601 UTC to the second, e.g. 2026-11-24T09:41:37Z. */
        fun isoUtc(epochMillis: Long): String =
            Instant.ofEpochMilli(epochMillis).truncatedTo(ChronoUnit.SECONDS).toString()
    }
}

/** Names the profile importer accepts: 1-256 characters, no control characters. */
object Names {
    fun clean(name: String, fallback: String): String {
        val kept = name.filter { it >= ' ' && it != '\u007f' }.trim().take(256)
        return kept.ifEmpty { fallback }
    }
}

object Sha256 {
    fun hex(bytes: ByteArray): String = digits(MessageDigest.getInstance("SHA-256").digest(bytes))

    /** Of the remaining bytes of `buffer` (a memory-mapped model), without moving its position. */
    fun hex(buffer: ByteBuffer): String {
        val digest = MessageDigest.getInstance("SHA-256")
        digest.update(buffer.duplicate())
        return digits(digest.digest())
    }

    private fun digits(digest: ByteArray): String =
        digest.joinToString("") { (it.toInt() and 0xFF).toString(16).padStart(2, '0') }
}

/** Files that are whole or absent: written to a temp file in the same folder, synced, then renamed. */
object AtomicFile {
    fun write(target: File, text: String): File {
        val dir = target.absoluteFile.parentFile ?: throw IOException("$target has no folder")
        if (!dir.isDirectory && !dir.mkdirs()) throw IOException("cannot make the folder $dir")
        val temp = File.createTempFile(".${target.name}.", ".tmp", dir)
        try {
            FileOutputStream(temp).use { out ->
                out.write(text.toByteArray(Charsets.UTF_8))
                out.fd.sync()
            }
            if (!temp.renameTo(target)) throw IOException("cannot rename $temp to $target")
        } finally {
            if (temp.exists()) temp.delete()
        }
        return target
    }
}
