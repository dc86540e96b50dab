package org.tfcompress.demo

import android.app.Activity
import android.content.ActivityNotFoundException
import android.content.Intent
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.provider.MediaStore
import android.widget.Button
import android.widget.CheckBox
import android.widget.EditText
import android.widget.ImageView
import android.widget.TextView
import org.tfcompress.demo.core.AtomicFile
import org.tfcompress.demo.core.BenchmarkReport
import org.tfcompress.demo.core.DelegateKind
import org.tfcompress.demo.core.DeviceInfo
import org.tfcompress.demo.core.Energy
import org.tfcompress.demo.core.LatencyStats
import org.tfcompress.demo.core.ModelRun
import org.tfcompress.demo.core.Preprocess
import org.tfcompress.demo.core.Timing
import org.tensorflow.lite.TensorFlowLite
import java.io.File

/**
 * Classify a photo (camera or gallery) with the exported model and show the top 3 with the latency; benchmark
 * the model on the phone's CPU (builtin kernels, XNNPACK), GPU and NNAPI, with an edge bundle's kernels when
 * one was pushed, and write the `tfcompress.android_benchmark/1` JSON for `adb pull` and
 * `tfcompress profile --import` (docs/android.md).
 * Everything that is not an Android or LiteRT call is in the core module, tested on the JVM.
 */
class MainActivity : Activity() {
    private lateinit var status: TextView
    private lateinit var preview: ImageView
    private lateinit var result: TextView
    private lateinit var invert: CheckBox
    private lateinit var warmupField: EditText
    private lateinit var runsField: EditText
    private lateinit var threadsField: EditText
    private lateinit var benchmarkButton: Button
    private lateinit var benchmarkLog: TextView
    private lateinit var delegateBoxes: List<Pair<CheckBox, DelegateKind>>

    private var model: LoadedModel? = null
    private var classifier: ModelRunner? = null
    private var lastPixels: IntArray? = null

    @Volatile private var benchmarking = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        status = findViewById(R.id.status)
        preview = findViewById(R.id.preview)
        result = findViewById(R.id.result)
        invert = findViewById(R.id.invert)
        warmupField = findViewById(R.id.warmup)
        runsField = findViewById(R.id.runs)
        threadsField = findViewById(R.id.threads)
        benchmarkButton = findViewById(R.id.benchmark)
        benchmarkLog = findViewById(R.id.benchmark_log)
        delegateBoxes = listOf(
            findViewById<CheckBox>(R.id.use_cpu) to DelegateKind.CPU,
            findViewById<CheckBox>(R.id.use_xnnpack) to DelegateKind.XNNPACK,
            findViewById<CheckBox>(R.id.use_gpu) to DelegateKind.GPU,
            findViewById<CheckBox>(R.id.use_nnapi) to DelegateKind.NNAPI,
        )
        findViewById<Button>(R.id.camera).setOnClickListener { launch(Intent(MediaStore.ACTION_IMAGE_CAPTURE), REQUEST_CAMERA) }
        findViewById<Button>(R.id.gallery).setOnClickListener {
            launch(Intent(Intent.ACTION_GET_CONTENT).setType("image/*").addCategory(Intent.CATEGORY_OPENABLE), REQUEST_GALLERY)
        }
        benchmarkButton.setOnClickListener { startBenchmark() }
        loadModel()
    }

    override fun onDestroy() {
        classifier?.close()
        classifier = null
        super.onDestroy()
    }

    private fun loadModel() {
        try {
            val loaded = ModelAssets.load(assets)
            model = loaded
            val s = loaded.sidecar
            status.text = getString(
                R.string.model_loaded, s.modelFile, s.input.type.jsonName, s.image.height, s.image.width,
                s.image.channels, s.classCount,
            )
        } catch (e: Exception) {
            status.text = getString(R.string.model_missing, e.message ?: e.toString())
        }
    }

    private fun launch(intent: Intent, request: Int) {
        try {
            startActivityForResult(intent, request)
        } catch (e: ActivityNotFoundException) {
            result.text = getString(R.string.no_app_for_intent)
        }
    }

    @Suppress("DEPRECATION")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        super.onActivityResult(requestCode, resultCode, data)
        if (resultCode != RESULT_OK || data == null) return
        val bitmap = when (requestCode) {
            REQUEST_CAMERA -> data.extras?.get("data") as? Bitmap
            REQUEST_GALLERY -> data.data?.let { decode(it) }
            else -> null
        }
        if (bitmap == null) {
            result.text = getString(R.string.no_image)
            return
        }
        classify(bitmap)
    }

    /** A gallery image, decoded at a power-of-two reduction that still covers the model input. */
    private fun decode(uri: Uri): Bitmap? {
        val image = model?.sidecar?.image ?: return null
        val bounds = BitmapFactory.Options()
        bounds.inJustDecodeBounds = true
        contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, bounds) }
        if (bounds.outWidth <= 0 || bounds.outHeight <= 0) return null
        val options = BitmapFactory.Options()
        options.inSampleSize = Preprocess.sampleSize(bounds.outWidth, bounds.outHeight, image.width, image.height)
        return contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, options) }
    }

    private fun classify(bitmap: Bitmap) {
        val loaded = model ?: return
        val image = loaded.sidecar.image
        val crop = Preprocess.centerCrop(bitmap.width, bitmap.height, image.width.toDouble() / image.height)
        val cropped = Bitmap.createBitmap(bitmap, crop.x, crop.y, crop.width, crop.height)
        val scaled = Bitmap.createScaledBitmap(cropped, image.width, image.height, true)
        val argb = IntArray(image.pixels)
        scaled.getPixels(argb, 0, image.width, 0, 0, image.width, image.height)
        val pixels = Preprocess.channels(argb, image, invert.isChecked)
        lastPixels = pixels
        preview.setImageBitmap(cropped)
        val runner = try {
            classifier ?: ModelRunner(loaded.buffer(), loaded.sidecar, defaultDelegate(loaded), CLASSIFY_THREADS)
                .also { classifier = it }
        } catch (e: Exception) {
            result.text = getString(R.string.model_missing, e.message ?: e.toString())
            return
        }
        runner.setInput(loaded.io.inputBytes(pixels))
        val start = System.nanoTime()
        runner.invoke()
        val ms = (System.nanoTime() - start) / 1e6
        val lines = loaded.io.predictions(runner.outputBytes(), 3).map {
            getString(R.string.prediction, it.label, it.confidence * 100)
        }
        result.text = (lines + getString(R.string.latency, ms, runner.delegate.label, runner.threads)).joinToString("\n")
    }

    private fun defaultDelegate(loaded: LoadedModel) =
        if (loaded.sidecar.resolver == "builtin") DelegateKind.CPU else DelegateKind.XNNPACK

    private fun startBenchmark() {
        val loaded = model ?: return
        if (benchmarking) return
        val warmup = number(warmupField, 10, 0..10_000)
        val runs = number(runsField, 200, 1..100_000)
        val threads = number(threadsField, 4, 1..64)
        val delegates = delegateBoxes.filter { it.first.isChecked }.map { it.second }
        if (delegates.isEmpty()) {
            benchmarkLog.text = getString(R.string.pick_delegate)
            return
        }
        val pixels = lastPixels ?: IntArray(loaded.sidecar.image.size) { 128 }
        val outDir = getExternalFilesDir(null) ?: filesDir
        benchmarking = true
        benchmarkButton.isEnabled = false
        benchmarkLog.text = getString(R.string.benchmark_running, warmup, runs, threads)
        Thread {
            for (delegate in delegates) {
                val line = try {
                    benchmark(loaded, delegate, threads, warmup, runs, pixels, outDir)
                } catch (e: DelegateUnavailable) {
                    getString(R.string.delegate_unavailable, delegate.label, e.message ?: "")
                } catch (e: Exception) {
                    getString(R.string.delegate_failed, delegate.label, e.toString())
                }
                runOnUiThread { benchmarkLog.append("\n" + line) }
            }
            runOnUiThread {
                benchmarking = false
                benchmarkButton.isEnabled = true
            }
        }.start()
    }

    /** One delegate: warm up, sample the idle battery draw, time the runs while sampling, write the JSON. */
    private fun benchmark(
        loaded: LoadedModel, delegate: DelegateKind, threads: Int, warmup: Int, runs: Int, pixels: IntArray, outDir: File,
    ): String = ModelRunner(loaded.buffer(), loaded.sidecar, delegate, threads).use { runner ->
        runner.setInput(loaded.io.inputBytes(pixels))
        Timing.warmUp(warmup) { runner.invoke() }
        val battery = BatterySampler(this)
        val charging = battery.status().charging
        val baseline = battery.sampleIdle(BASELINE_MS)
        battery.start()
        val start = System.nanoTime()
        val ms = Timing.time(runs) { runner.invoke() }
        val wallMs = (System.nanoTime() - start) / 1e6
        val samples = battery.stop()
        val stats = LatencyStats.of(ms)
        val energy = Energy.summarize(samples, baseline, runs, wallMs, charging)
        val bundle = BundleBenchmark(File(outDir, BundleBenchmark.FOLDER))
        val times = if (bundle.present) bundle.run(delegate, threads, warmup, runs, loaded.sha256) else null
        val report = BenchmarkReport(
            appVersion = appVersion(),
            device = deviceInfo(),
            runtime = "LiteRT " + TensorFlowLite.runtimeVersion(),
            delegate = delegate,
            threads = threads,
            measuredAt = BenchmarkReport.isoUtc(System.currentTimeMillis()),
            models = listOf(ModelRun(loaded.sidecar.modelFile, loaded.sha256, warmup, runs, stats, energy)) +
                (times?.models ?: emptyList()),
            overheadMs = times?.overheadMs,
            kernels = times?.kernels ?: emptyList(),
        )
        val file = AtomicFile.write(File(outDir, report.fileName()), report.toJson())
        val kernels = times?.let { getString(R.string.bundle_result, it.kernels.size, it.models.size, it.failed.size) } ?: ""
        val joules = energy.stats?.let { e ->
            e.mjPerInferenceAboveBaseline?.let { getString(R.string.energy_above_idle, e.mjPerInference, it) }
                ?: getString(R.string.energy, e.mjPerInference)
        } ?: getString(R.string.no_energy, energy.unavailable ?: "")
        getString(R.string.benchmark_result, delegate.label, threads, stats.medianMs, stats.p90Ms, joules, file.absolutePath) + kernels
    }

    private fun number(field: EditText, default: Int, range: IntRange): Int =
        field.text.toString().trim().toIntOrNull()?.coerceIn(range) ?: default

    private fun appVersion(): String = try {
        packageManager.getPackageInfo(packageName, 0).versionName ?: "unknown"
    } catch (e: Exception) {
        "unknown"
    }

    private fun deviceInfo(): DeviceInfo {
        val soc = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}" else null
        return DeviceInfo(Build.MANUFACTURER, Build.MODEL, soc, Build.VERSION.SDK_INT, Build.SUPPORTED_ABIS.firstOrNull())
    }

    companion object {
        private const val REQUEST_CAMERA = 1
        private const val REQUEST_GALLERY = 2
        private const val CLASSIFY_THREADS = 4
        private const val BASELINE_MS = 2_000L
    }
}
