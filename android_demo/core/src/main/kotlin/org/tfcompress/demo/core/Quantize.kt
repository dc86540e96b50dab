package org.tfcompress.demo.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Float <-> tensor bytes with a tensor's scale and zero point, computed exactly as tfcompress does in Python
 * (`tfcompress.export.verify.quantize` / `dequantize`: float32 arithmetic, round half to even, clamp), so the
 * phone feeds the model the same int8 bytes the host verified (tests/test_android_model.py checks it byte for byte).
 */
object Quantizer {
    /** Model-space floats -> the input tensor's bytes (quantized, or float32 in the platform's byte order). */
    fun encode(values: FloatArray, spec: TensorSpec): ByteArray =
        if (spec.type.quantized) quantize(values, spec.scale, spec.zeroPoint, spec.type) else floatBytes(values)

    /** The output tensor's bytes -> floats (dequantized, or read as float32). */
    fun decode(bytes: ByteArray, spec: TensorSpec): FloatArray =
        if (spec.type.quantized) dequantize(bytes, spec.scale, spec.zeroPoint, spec.type) else floats(bytes)

    /** `q = clamp(round_half_even(v / scale) + zero_point, type range)`, in float32 like numpy. */
    fun quantize(values: FloatArray, scale: Double, zeroPoint: Int, type: TensorType): ByteArray {
        require(type.quantized) { "${type.jsonName} is not a quantized type" }
        val s = scale.toFloat()
        val zp = zeroPoint.toFloat()
        val lo = type.min.toFloat()
        val hi = type.max.toFloat()
        val out = ByteArray(values.size)
        for (i in values.indices) {
            val q = Math.rint((values[i] / s).toDouble()).toFloat() + zp
            out[i] = q.coerceIn(lo, hi).toInt().toByte()
        }
        return out
    }

    /** `real = (q - zero_point) * scale`, in float32 like numpy. */
    fun dequantize(bytes: ByteArray, scale: Double, zeroPoint: Int, type: TensorType): FloatArray {
        require(type.quantized) { "${type.jsonName} is not a quantized type" }
        val s = scale.toFloat()
        return FloatArray(bytes.size) { i ->
            val q = if (type == TensorType.UINT8) bytes[i].toInt() and 0xFF else bytes[i].toInt()
            (q - zeroPoint).toFloat() * s
        }
    }

    /** The stored value of each element, as an Int (-128..127 for int8, 0..255 for uint8). */
    fun storedValues(bytes: ByteArray, type: TensorType): IntArray =
        IntArray(bytes.size) { if (type == TensorType.UINT8) bytes[it].toInt() and 0xFF else bytes[it].toInt() }

    fun floatBytes(values: FloatArray): ByteArray {
        val buffer = ByteBuffer.allocate(values.size * 4).order(ByteOrder.nativeOrder())
        for (v in values) buffer.putFloat(v)
        return buffer.array()
    }

    fun floats(bytes: ByteArray): FloatArray {
        require(bytes.size % 4 == 0) { "${bytes.size} bytes are not float32 values" }
        val buffer = ByteBuffer.wrap(bytes).order(ByteOrder.nativeOrder())
        return FloatArray(bytes.size / 4) { buffer.getFloat() }
    }
}

/** One ranked class: its id, name, raw (dequantized) score and confidence (softmax unless already probabilities). */
data class Prediction(val classIndex: Int, val label: String, val score: Float, val confidence: Float)

/** Ranking of class scores. */
object TopK {
    /**
     * Indices of the `k` largest values, largest first; equal values keep ascending class order, as numpy's
     * `argsort(-scores, kind="stable")` does (tfcompress.android.golden.top_k).
     */
    fun topK(values: FloatArray, k: Int): List<Int> {
        val order = values.indices.sortedWith { a, b ->
            when {
                values[a] > values[b] -> -1
                values[a] < values[b] -> 1
                else -> a.compareTo(b)
            }
        }
        return order.take(maxOf(k, 0))
    }

    /** The scores themselves when they already form a distribution (a softmax output), else their softmax. */
    fun confidences(scores: FloatArray): FloatArray {
        if (scores.isEmpty()) return scores
        val isDistribution = scores.all { it in 0f..1f } && Math.abs(scores.sum() - 1f) < 0.02f
        if (isDistribution) return scores.copyOf()
        val max = scores.maxOrNull() ?: 0f
        val exps = DoubleArray(scores.size) { Math.exp((scores[it] - max).toDouble()) }
        val sum = exps.sum()
        return FloatArray(scores.size) { (exps[it] / sum).toFloat() }
    }
}

/** What happens around one invoke: pixels -> input bytes, output bytes -> ranked classes. */
class ModelIO(val sidecar: Sidecar, labels: List<String>? = null) {
    private val names: List<String>? = labels?.takeIf { it.size == sidecar.classCount } ?: sidecar.labels

    fun label(index: Int): String = names?.getOrNull(index) ?: "class $index"

    /** 0..255 channel values (HWC, see [Preprocess.channels]) -> the bytes of the input tensor. */
    fun inputBytes(pixels: IntArray): ByteArray {
        require(pixels.size == sidecar.image.size) { "${pixels.size} values for an input of ${sidecar.image.size}" }
        return Quantizer.encode(Preprocess.scale(pixels, sidecar.image.channels, sidecar.scaling), sidecar.input)
    }

    /** The output tensor's bytes -> the `k` best classes. */
    fun predictions(outputBytes: ByteArray, k: Int = 3): List<Prediction> {
        require(outputBytes.size == sidecar.output.byteCount) {
            "${outputBytes.size} output bytes, the sidecar says ${sidecar.output.byteCount}"
        }
        val scores = Quantizer.decode(outputBytes, sidecar.output)
        val confidence = TopK.confidences(scores)
        return TopK.topK(scores, k).map { Prediction(it, label(it), scores[it], confidence[it]) }
    }
}
