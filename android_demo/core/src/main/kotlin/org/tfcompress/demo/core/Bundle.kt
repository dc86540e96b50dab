package org.tfcompress.demo.core

/** One one-op model of an edge bundle: its kernel key is passed through to the benchmark JSON unchanged. */
data class BundleKernel(val digest: String, val file: String, val key: Map<*, *>)

/** A whole model of the bundle (the models the LUT was made for); its latency calibrates the profile. */
data class BundleModel(val name: String, val sha256: String, val file: String)

/**
 * `bundle.json` of `tfcompress profile MODEL --export-bundle DIR` (schema `tfcompress.edge_bundle/1`,
 * docs/latency.md): the one-op int8 models whose times become the phone's LUT, the per-invoke overhead model,
 * and the source models whole. `adb push DIR` into the app's files folder as `bundle/` and the benchmark
 * times them too.
 */
data class EdgeBundle(val kernels: List<BundleKernel>, val models: List<BundleModel>, val overheadModel: String?) {
    companion object {
        const val SCHEMA = "tfcompress.edge_bundle/1"

        fun parse(text: String): EdgeBundle {
            val root = try {
                JsonRead.obj(Json.parse(text), "bundle.json")
            } catch (e: JsonException) {
                throw DocumentException("bundle.json is not JSON (${e.message})")
            }
            if (root["schema"] != SCHEMA) throw DocumentException("bundle.json's schema is ${root["schema"]}, not $SCHEMA")
            val kernels = JsonRead.list(root["kernels"] ?: emptyList<Any>(), "kernels").mapIndexed { i, item ->
                val where = "kernels[$i]"
                val entry = JsonRead.obj(item, where)
                BundleKernel(
                    digest = JsonRead.string(JsonRead.field(entry, "digest", where), "$where.digest"),
                    file = safeFile(JsonRead.string(JsonRead.field(entry, "file", where), "$where.file"), "$where.file"),
                    key = JsonRead.obj(JsonRead.field(entry, "key", where), "$where.key"),
                )
            }
            val models = JsonRead.list(root["models"] ?: emptyList<Any>(), "models").mapIndexed { i, item ->
                val where = "models[$i]"
                val entry = JsonRead.obj(item, where)
                BundleModel(
                    name = JsonRead.string(JsonRead.field(entry, "name", where), "$where.name"),
                    sha256 = JsonRead.string(JsonRead.field(entry, "sha256", where), "$where.sha256"),
                    file = safeFile(JsonRead.string(JsonRead.field(entry, "file", where), "$where.file"), "$where.file"),
                )
            }
            val overhead = root["overhead_model"]?.let { safeFile(JsonRead.string(it, "overhead_model"), "overhead_model") }
            return EdgeBundle(kernels, models, overhead)
        }

        /** A path inside the bundle folder: relative, no `..` (a bundle file cannot point elsewhere on the phone). */
        private fun safeFile(path: String, where: String): String {
            val parts = path.split('/')
            if (path.isEmpty() || path.startsWith("/") || parts.any { it == ".." || it.isEmpty() }) {
                throw DocumentException("$where is not a path inside the bundle: $path")
            }
            return path
        }
    }
}

/** A kernel timed the way tfcompress times kernels: in rounds, median of the round medians, spread = their range. */
data class RoundTiming(val medianMs: Double, val spreadMs: Double, val runs: Int)

/** One bundle kernel's timing: `ms` in the benchmark JSON is `raw - overhead` (not below 0), as edge_profile.py writes. */
data class KernelResult(val kernel: BundleKernel, val timing: RoundTiming)

/** Rounds of timed invokes (tfcompress/edge/edge_profile.py's protocol, without its busy-CPU detection). */
object RoundTimer {
    const val ROUNDS = 3

    fun time(runs: Int, rounds: Int = ROUNDS, clockNanos: () -> Long = System::nanoTime, invoke: () -> Unit): RoundTiming {
        require(runs >= 1 && rounds >= 1) { "runs and rounds must be >= 1" }
        val n = minOf(rounds, runs)
        val medians = DoubleArray(n) { r ->
            val share = runs / n + if (r < runs % n) 1 else 0
            LatencyStats.of(Timing.time(share, clockNanos, invoke)).medianMs
        }
        val sorted = medians.sortedArray()
        return RoundTiming(LatencyStats.percentile(sorted, 50.0), sorted.last() - sorted.first(), runs)
    }
}
