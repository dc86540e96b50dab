package org.tfcompress.demo.core

/** A sidecar (or model) the app cannot use; the message is one line saying why. */
class SidecarException(message: String) : DocumentException(message)

/** Tensor element types the app feeds and reads. Others (int16, int32, ...) are refused by [SidecarParser]. */
enum class TensorType(val jsonName: String, val byteSize: Int, val min: Int, val max: Int, val quantized: Boolean) {
    INT8("int8", 1, -128, 127, true),
    UINT8("uint8", 1, 0, 255, true),
    FLOAT32("float32", 4, 0, 0, false);

    companion object {
        fun of(name: String): TensorType? = values().firstOrNull { it.jsonName == name }

        val NAMES: List<String> get() = values().map { it.jsonName }
    }
}

/** One input or output as the sidecar describes it: `real = (q - zeroPoint) * scale` when quantized. */
data class TensorSpec(
    val name: String,
    val index: Int,
    val shape: List<Int>,
    val type: TensorType,
    val scale: Double,
    val zeroPoint: Int,
) {
    val elementCount: Int get() = shape.fold(1) { n, d -> n * maxOf(d, 1) }
    val byteCount: Int get() = elementCount * type.byteSize
}

/** Height, width and channels (1 = gray, 3 = RGB) of the image input `[1, H, W, C]`. */
data class ImageShape(val height: Int, val width: Int, val channels: Int) {
    val size: Int get() = height * width * channels
    val pixels: Int get() = height * width
}

/**
 * How 0..255 pixels became model input during calibration: `pixel * scale + offset`, one value for every channel
 * or one per channel (the sidecar's `preprocessing.inputs.<name>.scaling`, written by `tfcompress.data.Scaling`).
 */
data class PixelScaling(val scale: List<Double>, val offset: List<Double>) {
    fun scaleOf(channel: Int): Float = (if (scale.size == 1) scale[0] else scale[channel]).toFloat()

    fun offsetOf(channel: Int): Float = (if (offset.size == 1) offset[0] else offset[channel]).toFloat()
}

/** What the app reads from `model.meta.json` (schema `tfcompress.meta/1`, docs/sidecar.md). */
data class Sidecar(
    val modelFile: String,
    val modelSha256: String,
    val mode: String,
    val input: TensorSpec,
    val output: TensorSpec,
    val image: ImageShape,
    val scaling: PixelScaling,
    val labels: List<String>?,
    val resolver: String,
) {
    val classCount: Int get() = output.shape.last()

    /** Throws when `sha256` (of the model bytes in the assets) is not the one the sidecar describes. */
    fun checkModel(sha256: String) {
        if (!sha256.equals(modelSha256, ignoreCase = true)) {
            throw SidecarException(
                "the model in the assets (sha256 ${sha256.take(12)}...) is not the one its sidecar describes " +
                    "(${modelSha256.take(12)}...): run tfcompress android-export again"
            )
        }
    }
}

/**
 * Reads a sidecar and refuses, in one line, what the app cannot run: the same rules `tfcompress android-export`
 * applies (tfcompress/android/fit.py) before it copies a model into the assets.
 */
object SidecarParser {
    const val SCHEMA = "tfcompress.meta/1"
    private val SHA256 = Regex("[0-9a-fA-F]{64}")

    fun parse(text: String): Sidecar = try {
        read(text)
    } catch (e: SidecarException) {
        throw e
    } catch (e: DocumentException) {
        throw SidecarException(e.message ?: "the sidecar is malformed")
    }

    private fun read(text: String): Sidecar {
        val root = try {
            JsonRead.obj(Json.parse(text), "the sidecar")
        } catch (e: JsonException) {
            throw SidecarException("the sidecar is not JSON (${e.message})")
        }
        val schema = root["schema"]
        if (schema != SCHEMA) throw SidecarException("the sidecar's schema is ${schema ?: "missing"}, not $SCHEMA")
        val inputs = JsonRead.list(JsonRead.field(root, "inputs", "the sidecar"), "inputs")
        val outputs = JsonRead.list(JsonRead.field(root, "outputs", "the sidecar"), "outputs")
        if (inputs.size != 1) throw SidecarException("the model has ${inputs.size} inputs; the app feeds one image")
        if (outputs.size != 1) throw SidecarException("the model has ${outputs.size} outputs; the app reads one")
        val input = tensor(inputs[0], "input")
        val output = tensor(outputs[0], "output")
        val image = imageShape(input)
        val classes = classCount(output)
        val modelSha = JsonRead.string(JsonRead.field(root, "model_sha256", "the sidecar"), "model_sha256")
        if (!SHA256.matches(modelSha)) throw SidecarException("model_sha256 is not a sha256: $modelSha")
        val labels = root["labels"]?.let { value ->
            JsonRead.list(value, "labels").mapIndexed { i, label -> JsonRead.string(label, "labels[$i]") }
        }
        if (labels != null && labels.size != classes) {
            throw SidecarException("the sidecar has ${labels.size} labels for $classes output classes")
        }
        val runtime = root["runtime"]?.let { JsonRead.obj(it, "runtime") }
        val resolver = runtime?.get("resolver")?.let { JsonRead.string(it, "runtime.resolver") } ?: "default"
        if (resolver != "default" && resolver != "builtin") {
            throw SidecarException("runtime.resolver is '$resolver', not default or builtin")
        }
        return Sidecar(
            modelFile = root["model_file"]?.let { JsonRead.string(it, "model_file") } ?: "model.tflite",
            modelSha256 = modelSha.lowercase(),
            mode = root["mode"]?.let { JsonRead.string(it, "mode") } ?: "unknown",
            input = input,
            output = output,
            image = image,
            scaling = scaling(root, image.channels),
            labels = labels,
            resolver = resolver,
        )
    }

    private fun tensor(value: Any?, where: String): TensorSpec {
        val entry = JsonRead.obj(value, where)
        val dtype = JsonRead.string(JsonRead.field(entry, "dtype", where), "$where.dtype")
        val type = TensorType.of(dtype) ?: throw SidecarException(
            "the $where is $dtype; the app handles ${TensorType.NAMES.joinToString(", ")}"
        )
        val shape = JsonRead.list(JsonRead.field(entry, "shape", where), "$where.shape")
            .mapIndexed { i, d -> JsonRead.int(d, "$where.shape[$i]") }
        val scale = JsonRead.number(entry["scale"] ?: 0L, "$where.scale")
        val zeroPoint = JsonRead.int(entry["zero_point"] ?: 0L, "$where.zero_point")
        if (type.quantized) {
            if (!(scale > 0.0) || !scale.isFinite()) {
                throw SidecarException("the $where is $dtype without a per-tensor scale (scale $scale)")
            }
            if (zeroPoint < type.min || zeroPoint > type.max) {
                throw SidecarException("the $where's zero point $zeroPoint is outside $dtype")
            }
        }
        return TensorSpec(
            name = entry["name"]?.let { JsonRead.string(it, "$where.name") } ?: where,
            index = entry["index"]?.let { JsonRead.int(it, "$where.index") } ?: 0,
            shape = shape,
            type = type,
            scale = scale,
            zeroPoint = zeroPoint,
        )
    }

    private fun imageShape(input: TensorSpec): ImageShape {
        val s = input.shape
        if (s.size != 4 || s[0] != 1 || s[1] < 1 || s[2] < 1 || (s[3] != 1 && s[3] != 3)) {
            throw SidecarException("the input shape $s is not one image [1, height, width, 1 or 3]")
        }
        return ImageShape(s[1], s[2], s[3])
    }

    private fun classCount(output: TensorSpec): Int {
        val s = output.shape
        val ok = (s.size == 2 && s[0] == 1 && s[1] >= 1) || (s.size == 1 && s[0] >= 1)
        if (!ok) throw SidecarException("the output shape $s is not one row of class scores [1, classes]")
        return s.last()
    }

    private fun scaling(root: Map<*, *>, channels: Int): PixelScaling {
        val missing = SidecarException(
            "the sidecar records no pixel scaling (preprocessing.inputs.*.scaling): convert from images or uint8 " +
                "pixels with --image-scale so the app knows how pixels become input"
        )
        val inputs = (root["preprocessing"] as? Map<*, *>)?.get("inputs") as? Map<*, *> ?: throw missing
        if (inputs.size != 1) throw missing
        val (name, record) = inputs.entries.first()
        val where = "preprocessing.inputs.$name.scaling"
        val scaling = JsonRead.obj((record as? Map<*, *>)?.get("scaling") ?: throw missing, where)
        val scale = JsonRead.list(JsonRead.field(scaling, "scale", where), "$where.scale")
            .mapIndexed { i, v -> JsonRead.number(v, "$where.scale[$i]") }
        val offset = JsonRead.list(JsonRead.field(scaling, "offset", where), "$where.offset")
            .mapIndexed { i, v -> JsonRead.number(v, "$where.offset[$i]") }
        for ((what, values) in listOf("scale" to scale, "offset" to offset)) {
            if (values.size != 1 && values.size != channels) {
                throw SidecarException("$where.$what has ${values.size} values for $channels channel(s)")
            }
            if (values.any { !it.isFinite() }) throw SidecarException("$where.$what is not finite")
        }
        return PixelScaling(scale, offset)
    }
}

/** `labels.txt` (one class name per line, as `tfcompress android-export` writes it). */
object Labels {
    fun parse(text: String): List<String> = text.lines().map { it.trim() }.filter { it.isNotEmpty() }
}
