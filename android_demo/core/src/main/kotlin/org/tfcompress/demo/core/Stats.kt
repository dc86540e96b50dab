package org.tfcompress.demo.core

/** Statistics of the timed invokes of one benchmark run, in ms (`latency_ms` of the benchmark JSON). */
data class LatencyStats(
    val count: Int,
    val medianMs: Double,
    val p90Ms: Double,
    val meanMs: Double,
    val minMs: Double,
    val maxMs: Double,
) {
    companion object {
        fun of(ms: DoubleArray): LatencyStats {
            require(ms.isNotEmpty()) { "no timed invokes" }
            require(ms.all { it.isFinite() && it >= 0.0 }) { "a time is negative or not finite" }
            val sorted = ms.sortedArray()
            return LatencyStats(
                count = sorted.size,
                medianMs = percentile(sorted, 50.0),
                p90Ms = percentile(sorted, 90.0),
                meanMs = sorted.average(),
                minMs = sorted.first(),
                maxMs = sorted.last(),
            )
        }

        /** numpy.percentile's default ("linear" interpolation between the closest ranks) of sorted values. */
        fun percentile(sorted: DoubleArray, p: Double): Double {
            require(sorted.isNotEmpty() && p in 0.0..100.0) { "percentile $p of ${sorted.size} values" }
            val position = p / 100.0 * (sorted.size - 1)
            val lo = Math.floor(position).toInt()
            val hi = minOf(lo + 1, sorted.size - 1)
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo)
        }
    }
}

/** The benchmark's loop: untimed warm-up invokes, then timed ones, each timed on its own. */
object Timing {
    fun warmUp(invokes: Int, invoke: () -> Unit) {
        require(invokes >= 0) { "warm-up must be >= 0" }
        repeat(invokes) { invoke() }
    }

    /** ms of each of `runs` invokes, read from `clockNanos` (System.nanoTime on the phone). */
    fun time(runs: Int, clockNanos: () -> Long = System::nanoTime, invoke: () -> Unit): DoubleArray {
        require(runs >= 1) { "runs must be >= 1" }
        return DoubleArray(runs) {
            val start = clockNanos()
            invoke()
            (clockNanos() - start) / 1e6
        }
    }
}
