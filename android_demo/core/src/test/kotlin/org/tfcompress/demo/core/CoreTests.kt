package org.tfcompress.demo.core

import java.io.File
import java.nio.file.Files

/** The core's unit tests: `java -cp core.jar:kotlin-stdlib.jar org.tfcompress.demo.core.CoreTests`. */
object CoreTests {
    /** A sidecar as `tfcompress demo` writes it, abridged to what the app reads. */
    fun demoSidecar(
        inputDtype: String = "int8",
        inputShape: String = "[1, 28, 28, 1]",
        labels: String = """["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]""",
        scaling: String = """"scaling": {"spec": "0,1", "scale": [0.00392156862745098], "offset": [0.0]}""",
        extraInput: String = "",
    ): String = """
        {"schema": "tfcompress.meta/1", "model_file": "fmnist_cnn_int8.tflite",
         "model_sha256": "${"ab".repeat(32)}", "mode": "int8",
         "inputs": [{"name": "serving_default_image:0", "index": 0, "shape": $inputShape, "dtype": "$inputDtype",
                     "scale": 0.00392156862745098, "zero_point": -128}$extraInput],
         "outputs": [{"name": "StatefulPartitionedCall:0", "index": 40, "shape": [1, 10], "dtype": "int8",
                      "scale": 0.1, "zero_point": 5}],
         "preprocessing": {"samples": 200, "inputs": {"image": {"shape": [200, 28, 28], "source_dtype": "uint8",
                           "dtype": "float32", $scaling}}},
         "labels": $labels,
         "runtime": {"resolver": "default", "notes": []}}
    """.trimIndent()

    @JvmStatic
    fun main(args: Array<String>) {
        val t = TestRunner()
        json(t)
        sidecar(t)
        quantizer(t)
        preprocessing(t)
        ranking(t)
        statistics(t)
        energy(t)
        benchmarkReport(t)
        bundle(t)
        t.finish()
    }

    private fun json(t: TestRunner) {
        t.test("json parses every kind of value") {
            val doc = Json.parse("""{"a": [1, -2.5, 3e2, true, false, null], "s": "x\"\\\n\u00e9\/", "o": {}}""")
            val map = doc as Map<*, *>
            checkEqual(map["a"], listOf(1L, -2.5, 300.0, true, false, null), "array")
            checkEqual(map["s"], "x\"\\\n\u00e9/", "string")
            checkEqual(map["o"], emptyMap<String, Any?>(), "object")
        }
        t.test("json written reads back the same") {
            val value = linkedMapOf("n" to 3, "x" to 0.1, "tiny" to 1e-7, "list" to listOf("a\tb", null, true), "nested" to mapOf("k" to emptyList<Any>()))
            val back = Json.parse(Json.write(value)) as Map<*, *>
            checkEqual(back["n"], 3L, "int")
            checkEqual(back["x"], 0.1, "double")
            checkEqual(back["tiny"], 1e-7, "small double")
            checkEqual(back["list"], listOf("a\tb", null, true), "list")
            checkEqual(Json.write(mapOf("a" to 1), indent = 0), "{\"a\":1}", "compact")
        }
        t.test("json refuses what the profile importer refuses") {
            checkThrows<JsonException> { Json.write(mapOf("x" to Double.NaN)) }
            checkThrows<JsonException> { Json.write(mapOf("x" to Double.POSITIVE_INFINITY)) }
            checkThrows<JsonException> { Json.parse("[1, 2") }
            checkThrows<JsonException> { Json.parse("{\"a\": 1} x") }
            checkThrows<JsonException> { Json.parse("[".repeat(100) + "]".repeat(100)) }
            checkThrows<JsonException> { Json.parse("\"a\u0001\"") }
        }
    }

    private fun sidecar(t: TestRunner) {
        t.test("the demo's sidecar parses") {
            val s = SidecarParser.parse(demoSidecar())
            checkEqual(s.image, ImageShape(28, 28, 1), "image")
            checkEqual(s.input.type, TensorType.INT8, "input type")
            checkEqual(s.input.zeroPoint, -128, "zero point")
            checkEqual(s.output.byteCount, 10, "output bytes")
            checkEqual(s.scaling.scaleOf(0), (1.0 / 255).toFloat(), "pixel scale")
            checkEqual(s.labels?.get(9), "Ankle boot", "label")
            checkEqual(s.resolver, "default", "resolver")
            checkEqual(s.modelFile, "fmnist_cnn_int8.tflite", "model file")
        }
        val refusals = mapOf(
            "int16 input" to demoSidecar(inputDtype = "int16"),
            "two inputs" to demoSidecar(extraInput = """, {"name": "b", "shape": [1, 4], "dtype": "int8", "scale": 1.0, "zero_point": 0}"""),
            "rank-3 input" to demoSidecar(inputShape = "[1, 28, 28]"),
            "four channels" to demoSidecar(inputShape = "[1, 28, 28, 4]"),
            "no pixel scaling" to demoSidecar(scaling = "\"cast\": \"uint8->float32\""),
            "label count" to demoSidecar(labels = """["a", "b"]"""),
            "scaling per channel of another count" to demoSidecar(scaling = """"scaling": {"scale": [1, 2], "offset": [0]}"""),
            "not a sidecar" to """{"schema": "tfcompress.edge_result/1"}""",
            "not JSON" to "fmnist",
        )
        for ((name, text) in refusals) {
            t.test("the sidecar is refused: $name") {
                val e = checkThrows<SidecarException> { SidecarParser.parse(text) }
                check(e.message.orEmpty().isNotBlank() && '\n' !in e.message.orEmpty()) { "one-line reason: ${e.message}" }
            }
        }
        t.test("the int16 refusal names the dtype and what the app handles") {
            val e = checkThrows<SidecarException> { SidecarParser.parse(demoSidecar(inputDtype = "int16")) }
            check("int16" in e.message.orEmpty() && "int8, uint8, float32" in e.message.orEmpty()) { e.message.orEmpty() }
        }
        t.test("a model that is not the sidecar's is refused") {
            val s = SidecarParser.parse(demoSidecar())
            s.checkModel("AB".repeat(32))
            checkThrows<SidecarException> { s.checkModel("cd".repeat(32)) }
        }
        t.test("labels.txt lines") {
            checkEqual(Labels.parse("a\n\n b \r\nc"), listOf("a", "b", "c"), "labels")
        }
    }

    private fun quantizer(t: TestRunner) {
        t.test("quantize rounds half to even, adds the zero point, clamps") {
            val q = Quantizer.quantize(floatArrayOf(0.25f, 0.75f, -0.25f, 1.25f, 1000f, -1000f, 0f), 0.5, -3, TensorType.INT8)
            checkEqual(q.toList(), listOf<Byte>(-3, -1, -3, -1, 127, -128, -3), "int8")
            val u = Quantizer.quantize(floatArrayOf(0f, 1f, 2f, -1f), 1.0 / 255, 0, TensorType.UINT8)
            checkEqual(Quantizer.storedValues(u, TensorType.UINT8).toList(), listOf(0, 255, 255, 0), "uint8")
        }
        t.test("each demo pixel quantizes to pixel - 128") {
            val s = SidecarParser.parse(demoSidecar())
            val io = ModelIO(s)
            val pixels = IntArray(784) { it % 256 }
            val q = io.inputBytes(pixels)
            for (i in pixels.indices) checkEqual(q[i].toInt(), pixels[i] - 128, "pixel ${pixels[i]}")
        }
        t.test("dequantize is (q - zero point) * scale") {
            val f = Quantizer.dequantize(byteArrayOf(-128, 0, 127), 0.5, -128, TensorType.INT8)
            checkEqual(f.toList(), listOf(0f, 64f, 127.5f), "int8")
            val u = Quantizer.dequantize(byteArrayOf(0, -1), 2.0, 1, TensorType.UINT8)
            checkEqual(u.toList(), listOf(-2f, 508f), "uint8")
        }
        t.test("float32 tensors pass through as bytes") {
            val values = floatArrayOf(1.5f, -0.25f, 3e-8f)
            val spec = TensorSpec("x", 0, listOf(1, 3), TensorType.FLOAT32, 0.0, 0)
            checkEqual(Quantizer.decode(Quantizer.encode(values, spec), spec).toList(), values.toList(), "round trip")
        }
    }

    private fun preprocessing(t: TestRunner) {
        t.test("gray is Pillow's L conversion") {
            checkEqual(Preprocess.luma(255, 0, 0), 76, "red")
            checkEqual(Preprocess.luma(0, 255, 0), 150, "green")
            checkEqual(Preprocess.luma(0, 0, 255), 29, "blue")
            checkEqual(Preprocess.luma(255, 255, 255), 255, "white")
            checkEqual(Preprocess.luma(0, 0, 0), 0, "black")
        }
        t.test("ARGB pixels become HWC channel values") {
            val argb = intArrayOf(0xFF102030.toInt(), 0x00FFFFFF)
            checkEqual(Preprocess.channels(argb, ImageShape(1, 2, 3)).toList(), listOf(0x10, 0x20, 0x30, 255, 255, 255), "rgb")
            checkEqual(Preprocess.channels(argb, ImageShape(1, 2, 1), invert = true).toList(), listOf(255 - Preprocess.luma(0x10, 0x20, 0x30), 0), "gray inverted")
            checkThrows<IllegalArgumentException> { Preprocess.channels(argb, ImageShape(2, 2, 1)) }
        }
        t.test("scaling is per channel, pixel * scale + offset") {
            val scaling = PixelScaling(listOf(1.0, 0.5, 2.0), listOf(0.0, -1.0, 0.25))
            checkEqual(Preprocess.scale(intArrayOf(10, 10, 10), 3, scaling).toList(), listOf(10f, 4f, 20.25f), "rgb")
        }
        t.test("center crop keeps the input's aspect ratio") {
            checkEqual(Preprocess.centerCrop(400, 300, 1.0), CropRect(50, 0, 300, 300), "landscape")
            checkEqual(Preprocess.centerCrop(300, 400, 1.0), CropRect(0, 50, 300, 300), "portrait")
            checkEqual(Preprocess.centerCrop(200, 100, 2.0), CropRect(0, 0, 200, 100), "same aspect")
        }
        t.test("sample size decodes at least the input's size") {
            checkEqual(Preprocess.sampleSize(4000, 3000, 28, 28), 64, "photo")
            checkEqual(Preprocess.sampleSize(20, 20, 28, 28), 1, "small")
        }
    }

    private fun ranking(t: TestRunner) {
        t.test("top-k is largest first, ties in class order") {
            checkEqual(TopK.topK(floatArrayOf(1f, 3f, 3f, -0f, 0f, 2f), 6), listOf(1, 2, 5, 0, 3, 4), "ranked, -0 ties 0")
            checkEqual(TopK.topK(floatArrayOf(1f), 3), listOf(0), "k beyond n")
        }
        t.test("confidences: softmax of logits, probabilities as they are") {
            val c = TopK.confidences(floatArrayOf(2f, 1f, 0f))
            checkClose(c.sum().toDouble(), 1.0, 1e-6, "sum")
            check(c[0] > c[1] && c[1] > c[2]) { "order" }
            checkEqual(TopK.confidences(floatArrayOf(0.7f, 0.3f)).toList(), listOf(0.7f, 0.3f), "distribution")
        }
        t.test("predictions name the classes") {
            val s = SidecarParser.parse(demoSidecar())
            val out = byteArrayOf(5, 5, 20, 5, 5, 5, 5, 30, 5, 5)
            val top = ModelIO(s).predictions(out)
            checkEqual(top.map { it.label }, listOf("Sneaker", "Pullover", "T-shirt/top"), "labels")
            checkClose(top[0].score.toDouble(), 2.5, 1e-6, "score")
            checkEqual(ModelIO(s.copy(labels = null)).predictions(out, 1)[0].label, "class 7", "unnamed")
        }
    }

    private fun statistics(t: TestRunner) {
        t.test("latency statistics match numpy") {
            val s = LatencyStats.of(doubleArrayOf(4.0, 1.0, 3.0, 2.0))
            checkClose(s.medianMs, 2.5, what = "median")
            checkClose(s.p90Ms, 3.7, what = "p90")
            checkClose(s.meanMs, 2.5, what = "mean")
            checkEqual(s.minMs to s.maxMs, 1.0 to 4.0, "range")
            checkClose(LatencyStats.of(doubleArrayOf(7.0)).p90Ms, 7.0, what = "one value")
            checkThrows<IllegalArgumentException> { LatencyStats.of(doubleArrayOf()) }
            checkThrows<IllegalArgumentException> { LatencyStats.of(doubleArrayOf(1.0, Double.NaN)) }
        }
        t.test("timing warms up, then times each invoke") {
            var clock = 0L
            var invokes = 0
            Timing.warmUp(3) { invokes++ }
            val ms = Timing.time(5, { clock }) { invokes++; clock += 2_000_000 }
            checkEqual(invokes, 8, "invokes")
            checkEqual(ms.toList(), List(5) { 2.0 }, "ms")
        }
    }

    private fun energy(t: TestRunner) {
        val during = List(10) { BatterySample(it * 100.0, -500_000, 4000) }
        val idle = List(10) { BatterySample(it * 100.0, -250_000, 4000) }
        t.test("energy per inference from microamperes and millivolts") {
            val e = Energy.summarize(during, idle, runs = 100, wallMs = 1000.0, charging = false).stats!!
            checkClose(e.powerMwMean, 2000.0, what = "power")
            checkClose(e.mjPerInference, 20.0, what = "mJ per inference")
            checkClose(e.baselinePowerMwMean!!, 1000.0, what = "baseline")
            checkClose(e.mjPerInferenceAboveBaseline!!, 10.0, what = "above baseline")
            checkEqual(e.currentUnit, "uA", "unit")
        }
        t.test("phones that report mA are recognised") {
            val mA = during.map { it.copy(currentNow = 500) }
            val e = Energy.summarize(mA, emptyList(), runs = 100, wallMs = 1000.0, charging = false).stats!!
            checkClose(e.mjPerInference, 20.0, what = "mJ per inference")
            check(e.currentUnit.startsWith("mA")) { e.currentUnit }
            checkEqual(e.baselinePowerMwMean, null, "no baseline")
        }
        t.test("no energy while charging or without readings") {
            check(Energy.summarize(during, idle, 100, 1000.0, charging = true).unavailable!!.contains("charging")) { "charging" }
            val unsupported = during.map { it.copy(currentNow = Int.MIN_VALUE.toLong()) }
            check(Energy.summarize(unsupported, idle, 100, 1000.0, false).stats == null) { "unsupported" }
        }
    }

    private fun benchmarkReport(t: TestRunner) {
        val run = ModelRun(
            "fmnist_cnn_int8.tflite", "AB".repeat(32), 10, 4, LatencyStats.of(doubleArrayOf(1.0, 2.0, 3.0, 4.0)),
            Energy.summarize(List(5) { BatterySample(0.0, -400_000, 3900) }, emptyList(), 4, 10.0, false),
        )
        val report = BenchmarkReport(
            "0.1.0", DeviceInfo("Google\u0000", "Pixel 7", null, 34, "arm64-v8a"), "LiteRT 1.4.2",
            DelegateKind.XNNPACK, 4, BenchmarkReport.isoUtc(0), listOf(run),
        )
        t.test("the benchmark JSON has the android_benchmark/1 fields") {
            val doc = Json.parse(report.toJson()) as Map<*, *>
            checkEqual(doc["schema"], "tfcompress.android_benchmark/1", "schema")
            checkEqual(doc["delegate"], "XNNPACK", "delegate")
            checkEqual(doc["measured_at"], "1970-01-01T00:00:00Z", "time")
            val device = doc["device"] as Map<*, *>
            checkEqual(device["manufacturer"], "Google", "control characters dropped")
            check("soc" !in device) { "an unknown soc is left out" }
            val model = (doc["models"] as List<*>)[0] as Map<*, *>
            checkEqual(model["sha256"], "ab".repeat(32), "sha256")
            val latency = model["latency_ms"] as Map<*, *>
            checkEqual(latency["median"], 2.5, "median")
            check((latency["energy"] as Map<*, *>).containsKey("mj_per_inference")) { "energy" }
        }
        t.test("a report that the importer would refuse is not made") {
            checkThrows<IllegalArgumentException> { report.copy(threads = 0) }
            checkThrows<IllegalArgumentException> { report.copy(models = listOf(run.copy(sha256 = "x"))) }
        }
        t.test("file name and atomic write") {
            checkEqual(report.fileName(), "benchmark-XNNPACK-t4-19700101T000000Z.json", "name")
            val dir = Files.createTempDirectory("core-tests").toFile()
            try {
                val file = AtomicFile.write(File(dir, report.fileName()), report.toJson())
                checkEqual(file.readText(), report.toJson(), "content")
                checkEqual(dir.list()!!.toList(), listOf(report.fileName()), "no temp file left")
            } finally {
                dir.deleteRecursively()
            }
        }
        t.test("sha256 of bytes and of a buffer") {
            val empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            checkEqual(Sha256.hex(ByteArray(0)), empty, "empty")
            val buffer = java.nio.ByteBuffer.wrap("abc".toByteArray())
            checkEqual(Sha256.hex(buffer), Sha256.hex("abc".toByteArray()), "buffer")
            checkEqual(buffer.position(), 0, "position kept")
        }
    }

    private fun bundle(t: TestRunner) {
        val text = """
            {"schema": "tfcompress.edge_bundle/1", "threads": 1, "overhead_model": "models/overhead.tflite",
             "kernels": [{"digest": "d1", "file": "models/d1.tflite",
                          "key": {"op": "ADD", "dtype": "int8", "in_shape": [1, 4], "out_shape": [1, 4], "extra": [1, 4]}}],
             "models": [{"name": "m.tflite", "sha256": "${"0f".repeat(32)}", "file": "models/model-0f.tflite", "kernels": []}]}
        """.trimIndent()
        t.test("an edge bundle parses") {
            val b = EdgeBundle.parse(text)
            checkEqual(b.kernels.single().file, "models/d1.tflite", "kernel file")
            checkEqual(b.kernels.single().key["out_shape"], listOf(1L, 4L), "key")
            checkEqual(b.models.single().name, "m.tflite", "model")
            checkEqual(b.overheadModel, "models/overhead.tflite", "overhead")
        }
        t.test("a bundle cannot point outside its folder") {
            checkThrows<DocumentException> { EdgeBundle.parse(text.replace("models/d1.tflite", "../../d1.tflite")) }
            checkThrows<DocumentException> { EdgeBundle.parse(text.replace("models/d1.tflite", "/sdcard/x.tflite")) }
            checkThrows<DocumentException> { EdgeBundle.parse(text.replace("edge_bundle/1", "edge_bundle/2")) }
        }
        t.test("rounds: median of round medians, spread their range") {
            var clock = 0L
            val steps = ArrayDeque(listOf(1L, 1L, 1L, 3L, 3L, 3L, 2L, 2L, 2L).map { it * 1_000_000 })
            val r = RoundTimer.time(9, 3, { clock }) { clock += steps.removeFirst() }
            checkEqual(r, RoundTiming(2.0, 2.0, 9), "timing")
        }
        t.test("kernels go into the benchmark JSON with the overhead taken off") {
            val b = EdgeBundle.parse(text)
            val report = BenchmarkReport(
                "0.1.0", DeviceInfo("G", "P", null, 34, null), "LiteRT", DelegateKind.XNNPACK, 1, "t",
                emptyList(), overheadMs = 0.01, kernels = listOf(KernelResult(b.kernels[0], RoundTiming(0.05, 0.002, 30))),
            )
            val doc = Json.parse(report.toJson()) as Map<*, *>
            checkEqual(doc["overhead_ms"], 0.01, "overhead")
            val kernel = (doc["kernels"] as List<*>).single() as Map<*, *>
            checkClose(kernel["ms"] as Double, 0.04, 1e-12, "ms")
            checkEqual(kernel["raw_ms"], 0.05, "raw")
            checkEqual((kernel["key"] as Map<*, *>)["op"], "ADD", "key")
        }
    }
}
