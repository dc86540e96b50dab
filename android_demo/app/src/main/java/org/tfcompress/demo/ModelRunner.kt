package org.tfcompress.demo

import android.os.Build
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import org.tfcompress.demo.core.DelegateKind
import org.tfcompress.demo.core.Sidecar
import org.tfcompress.demo.core.TensorSpec
import org.tfcompress.demo.core.TensorType
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** The delegate cannot run on this phone or this model; the message says why. */
class DelegateUnavailable(message: String) : Exception(message)

/**
 * Interpreter options for one delegate and thread count, owning the delegate objects it makes (one set per
 * interpreter). `resolver` is the sidecar's `runtime.resolver`: "builtin" models must not run under XNNPACK.
 */
class DelegateOptions(val delegate: DelegateKind, val threads: Int, resolver: String = "default") : AutoCloseable {
    val options: Interpreter.Options = Interpreter.Options().setNumThreads(threads)
    private val owned = ArrayList<Delegate>()

    init {
        when (delegate) {
            DelegateKind.CPU -> options.setUseXNNPACK(false)
            DelegateKind.XNNPACK -> {
                if (resolver == "builtin") {
                    throw DelegateUnavailable("the sidecar says this model runs only without XNNPACK (runtime.resolver builtin)")
                }
                options.setUseXNNPACK(true)
            }
            DelegateKind.GPU -> {
                val supported = CompatibilityList().use { it.isDelegateSupportedOnThisDevice }
                if (!supported) throw DelegateUnavailable("LiteRT's GPU delegate does not support this phone's GPU")
                add(GpuDelegate())
            }
            DelegateKind.NNAPI -> {
                if (Build.VERSION.SDK_INT < Build.VERSION_CODES.O_MR1) throw DelegateUnavailable("NNAPI needs Android 8.1")
                add(NnApiDelegate())
            }
        }
    }

    private fun add(d: Delegate) {
        owned.add(d)
        options.addDelegate(d)
    }

    /** An interpreter for `model`; a model the delegate cannot take is a [DelegateUnavailable]. */
    fun interpreter(model: ByteBuffer): Interpreter = try {
        Interpreter(model, options)
    } catch (e: Exception) {
        throw DelegateUnavailable("the interpreter did not start: ${e.message}")
    }

    override fun close() {
        owned.forEach { it.close() }
        owned.clear()
    }
}

/**
 * The exported model on one delegate, with direct input and output buffers of the sizes the sidecar gives.
 * The sidecar's tensors are checked against the interpreter's, so a sidecar of another model is caught here.
 */
class ModelRunner(model: ByteBuffer, sidecar: Sidecar, val delegate: DelegateKind, val threads: Int) : AutoCloseable {
    private val delegates = DelegateOptions(delegate, threads, sidecar.resolver)
    private val interpreter: Interpreter = try {
        delegates.interpreter(model)
    } catch (e: Exception) {
        delegates.close()
        throw e
    }
    private val input: ByteBuffer = ByteBuffer.allocateDirect(sidecar.input.byteCount).order(ByteOrder.nativeOrder())
    private val output: ByteBuffer = ByteBuffer.allocateDirect(sidecar.output.byteCount).order(ByteOrder.nativeOrder())

    init {
        try {
            check("input", sidecar.input, interpreter.getInputTensor(0).shape(), interpreter.getInputTensor(0).dataType())
            check("output", sidecar.output, interpreter.getOutputTensor(0).shape(), interpreter.getOutputTensor(0).dataType())
        } catch (e: IllegalStateException) {
            close()
            throw e
        }
    }

    private fun check(what: String, spec: TensorSpec, shape: IntArray, type: DataType) {
        val expected = when (spec.type) {
            TensorType.INT8 -> DataType.INT8
            TensorType.UINT8 -> DataType.UINT8
            TensorType.FLOAT32 -> DataType.FLOAT32
        }
        if (!shape.contentEquals(spec.shape.toIntArray()) || type != expected) {
            throw IllegalStateException(
                "the model's $what is ${type.name.lowercase()} ${shape.toList()}, its sidecar says " +
                    "${spec.type.jsonName} ${spec.shape}: run tfcompress android-export again"
            )
        }
    }

    /** Copies the input tensor's bytes in; [invoke] then reuses them. */
    fun setInput(bytes: ByteArray) {
        require(bytes.size == input.capacity()) { "${bytes.size} input bytes, the model takes ${input.capacity()}" }
        input.clear()
        input.put(bytes)
    }

    /** One inference on the current input (what the benchmark times). */
    fun invoke() {
        input.rewind()
        output.clear()
        interpreter.run(input, output)
    }

    /** The output tensor's bytes of the last [invoke]. */
    fun outputBytes(): ByteArray {
        val bytes = ByteArray(output.capacity())
        output.rewind()
        output.get(bytes)
        return bytes
    }

    override fun close() {
        interpreter.close()
        delegates.close()
    }
}

/**
 * Any .tflite of an edge bundle (a one-op kernel, the overhead model, a whole model), on zero-filled inputs:
 * int8 kernels take as long on zeros as on data. Every input and output gets a direct buffer of its size.
 */
class KernelRunner(model: ByteBuffer, delegate: DelegateKind, threads: Int) : AutoCloseable {
    private val delegates = DelegateOptions(delegate, threads)
    private val interpreter: Interpreter = try {
        delegates.interpreter(model)
    } catch (e: Exception) {
        delegates.close()
        throw e
    }
    private val inputs: Array<Any> = Array(interpreter.inputTensorCount) { direct(interpreter.getInputTensor(it).numBytes()) }
    private val outputs: Map<Int, Any> =
        (0 until interpreter.outputTensorCount).associateWith { direct(interpreter.getOutputTensor(it).numBytes()) }

    private fun direct(bytes: Int): ByteBuffer = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder())

    fun invoke() {
        for (buffer in inputs) (buffer as ByteBuffer).rewind()
        for (buffer in outputs.values) (buffer as ByteBuffer).clear()
        interpreter.runForMultipleInputsOutputs(inputs, outputs)
    }

    override fun close() {
        interpreter.close()
        delegates.close()
    }
}
