package org.tfcompress.demo

import org.tfcompress.demo.core.DelegateKind
import org.tfcompress.demo.core.EdgeBundle
import org.tfcompress.demo.core.KernelResult
import org.tfcompress.demo.core.LatencyStats
import org.tfcompress.demo.core.ModelRun
import org.tfcompress.demo.core.RoundTimer
import org.tfcompress.demo.core.Timing
import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.channels.FileChannel

/** What the bundle's files gave on one delegate: kernels for the LUT, the overhead, whole models, failures. */
class BundleTimes(
    val kernels: List<KernelResult>,
    val overheadMs: Double?,
    val models: List<ModelRun>,
    val failed: List<String>,
)

/**
 * Times an edge bundle that was pushed into the app's files folder (`tfcompress profile MODEL --export-bundle
 * bundle/`, then `adb push bundle/ .../files/`): each one-op kernel in rounds, the overhead model, and the
 * source models whole. Their times become the phone's LUT when the benchmark JSON is imported.
 */
class BundleBenchmark(private val dir: File) {
    val present: Boolean get() = File(dir, BUNDLE_JSON).isFile

    fun run(delegate: DelegateKind, threads: Int, warmup: Int, runs: Int, skipSha256: String): BundleTimes {
        val bundle = EdgeBundle.parse(File(dir, BUNDLE_JSON).readText())
        val failed = ArrayList<String>()
        val overhead = bundle.overheadModel?.let { file ->
            attempt(file, failed) { timeRounds(file, delegate, threads, warmup, runs).medianMs }
        }
        val kernels = bundle.kernels.mapNotNull { kernel ->
            attempt(kernel.file, failed) { KernelResult(kernel, timeRounds(kernel.file, delegate, threads, warmup, runs)) }
        }
        val models = bundle.models.filter { !it.sha256.equals(skipSha256, ignoreCase = true) }.mapNotNull { model ->
            attempt(model.file, failed) {
                KernelRunner(map(model.file), delegate, threads).use { runner ->
                    Timing.warmUp(warmup) { runner.invoke() }
                    val stats = LatencyStats.of(Timing.time(runs) { runner.invoke() })
                    ModelRun(model.name, model.sha256, warmup, runs, stats, null)
                }
            }
        }
        return BundleTimes(kernels, overhead, models, failed)
    }

    private fun <T> attempt(file: String, failed: MutableList<String>, body: () -> T): T? = try {
        body()
    } catch (e: Exception) {
        failed.add("$file: ${e.message ?: e}")
        null
    }

    private fun timeRounds(file: String, delegate: DelegateKind, threads: Int, warmup: Int, runs: Int) =
        KernelRunner(map(file), delegate, threads).use { runner ->
            Timing.warmUp(warmup) { runner.invoke() }
            RoundTimer.time(runs) { runner.invoke() }
        }

    private fun map(file: String): ByteBuffer = FileInputStream(File(dir, file)).use { stream ->
        stream.channel.map(FileChannel.MapMode.READ_ONLY, 0, stream.channel.size())
    }

    companion object {
        const val FOLDER = "bundle"
        const val BUNDLE_JSON = "bundle.json"
    }
}
