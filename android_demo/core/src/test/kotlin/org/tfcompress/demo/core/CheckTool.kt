package org.tfcompress.demo.core

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The core's side of the cross-language checks (tests/test_android_model.py): the Python tests hand it raw
 * files, it runs the same core code the app runs, and writes raw files back for Python to compare.
 *
 *   encode SIDECAR IMAGES OUT            N images of 0..255 values (HWC bytes) -> N input tensors' bytes
 *   gray RGB OUT                         RGB byte triples -> Pillow-style gray bytes
 *   decode SIDECAR OUTPUTS FLOATS TOPK K N output tensors -> dequantized float32 (little-endian) + top-K int32
 *   check-sidecar SIDECAR                prints "ok", or "refused: <reason>" and exits 3
 *   bench-json MODEL SIDECAR TIMES OUT [BATTERY|-] [BUNDLE_JSON KERNEL_TIMES]
 *                                        ms per line (and "ms current voltage" battery lines, and "digest ms" /
 *                                        "overhead ms" lines for a bundle's kernels) -> benchmark JSON
 */
object CheckTool {
    @JvmStatic
    fun main(args: Array<String>) {
        when (args.firstOrNull()) {
            "encode" -> encode(File(args[1]), File(args[2]), File(args[3]))
            "gray" -> gray(File(args[1]), File(args[2]))
            "decode" -> decode(File(args[1]), File(args[2]), File(args[3]), File(args[4]), args[5].toInt())
            "check-sidecar" -> checkSidecar(File(args[1]))
            "bench-json" -> benchJson(
                File(args[1]), File(args[2]), File(args[3]), File(args[4]),
                args.getOrNull(5)?.takeIf { it != "-" }?.let(::File), args.getOrNull(6)?.let(::File), args.getOrNull(7)?.let(::File),
            )
            else -> {
                System.err.println("usage: CheckTool encode|gray|decode|check-sidecar|bench-json ...")
                kotlin.system.exitProcess(2)
            }
        }
    }

    private fun sidecar(file: File) = SidecarParser.parse(file.readText())

    private fun encode(sidecarFile: File, images: File, out: File) {
        val io = ModelIO(sidecar(sidecarFile))
        val size = io.sidecar.image.size
        val raw = images.readBytes()
        require(raw.size % size == 0) { "${raw.size} bytes are not whole images of $size values" }
        out.outputStream().use { stream ->
            for (start in raw.indices step size) {
                val pixels = IntArray(size) { raw[start + it].toInt() and 0xFF }
                stream.write(io.inputBytes(pixels))
            }
        }
    }

    private fun gray(rgb: File, out: File) {
        val raw = rgb.readBytes()
        val gray = ByteArray(raw.size / 3) { i ->
            val at = 3 * i
            Preprocess.luma(raw[at].toInt() and 0xFF, raw[at + 1].toInt() and 0xFF, raw[at + 2].toInt() and 0xFF).toByte()
        }
        out.writeBytes(gray)
    }

    private fun decode(sidecarFile: File, outputs: File, floatsOut: File, topOut: File, k: Int) {
        val s = sidecar(sidecarFile)
        val size = s.output.byteCount
        val raw = outputs.readBytes()
        require(raw.size % size == 0) { "${raw.size} bytes are not whole outputs of $size bytes" }
        val n = raw.size / size
        val floats = ByteBuffer.allocate(n * s.classCount * 4).order(ByteOrder.LITTLE_ENDIAN)
        val top = ByteBuffer.allocate(n * k * 4).order(ByteOrder.LITTLE_ENDIAN)
        for (row in 0 until n) {
            val scores = Quantizer.decode(raw.copyOfRange(row * size, (row + 1) * size), s.output)
            scores.forEach { floats.putFloat(it) }
            TopK.topK(scores, k).forEach { top.putInt(it) }
        }
        floatsOut.writeBytes(floats.array())
        topOut.writeBytes(top.array())
    }

    private fun checkSidecar(file: File) {
        try {
            sidecar(file)
            println("ok")
        } catch (e: SidecarException) {
            println("refused: ${e.message}")
            kotlin.system.exitProcess(3)
        }
    }

    private fun benchJson(model: File, sidecarFile: File, times: File, out: File, battery: File?, bundle: File?, kernelTimes: File?) {
        val s = sidecar(sidecarFile)
        val bytes = model.readBytes()
        val sha = Sha256.hex(bytes)
        s.checkModel(sha)
        val ms = times.readLines().filter { it.isNotBlank() }.map { it.trim().toDouble() }.toDoubleArray()
        val samples = battery?.readLines()?.filter { it.isNotBlank() }?.map { line ->
            val (at, current, voltage) = line.trim().split(Regex("\\s+"))
            BatterySample(at.toDouble(), current.toLong(), voltage.toInt())
        }
        val energy = samples?.let { Energy.summarize(it, emptyList(), ms.size, ms.sum(), charging = false) }
        val kernelMs = kernelTimes?.readLines()?.filter { it.isNotBlank() }?.associate { line ->
            val (name, value) = line.trim().split(Regex("\\s+"))
            name to value.toDouble()
        } ?: emptyMap()
        val kernels = bundle?.let { EdgeBundle.parse(it.readText()) }?.kernels?.map {
            KernelResult(it, RoundTiming(kernelMs.getValue(it.digest), 0.0, 30))
        } ?: emptyList()
        val report = BenchmarkReport(
            appVersion = "core-check",
            device = DeviceInfo("tfcompress", "JVM check", null, 0, System.getProperty("os.arch")),
            runtime = "LiteRT (JVM check)",
            delegate = DelegateKind.XNNPACK,
            threads = 1,
            measuredAt = BenchmarkReport.isoUtc(System.currentTimeMillis()),
            models = listOf(ModelRun(s.modelFile, sha, 0, ms.size, LatencyStats.of(ms), energy)),
            overheadMs = kernelMs["overhead"],
            kernels = kernels,
        )
        AtomicFile.write(out, report.toJson())
        println(out.path)
    }
}
