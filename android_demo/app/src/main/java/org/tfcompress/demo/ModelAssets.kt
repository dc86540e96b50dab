package org.tfcompress.demo

import android.content.res.AssetManager
import org.tfcompress.demo.core.Labels
import org.tfcompress.demo.core.ModelIO
import org.tfcompress.demo.core.Sha256
import org.tfcompress.demo.core.Sidecar
import org.tfcompress.demo.core.SidecarParser
import java.io.FileInputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.channels.FileChannel

/** The exported model, mapped from the APK, with its sidecar and labels, checked to belong together. */
class LoadedModel(val sidecar: Sidecar, val sha256: String, val io: ModelIO, private val map: () -> ByteBuffer) {
    /** A fresh read-only mapping of the model (each interpreter gets its own). */
    fun buffer(): ByteBuffer = map()
}

/**
 * The three files `tfcompress android-export` writes into `app/src/main/assets`. The .tflite is stored
 * uncompressed in the APK (`androidResources.noCompress`), which is what lets `openFd` memory-map it.
 */
object ModelAssets {
    const val MODEL = "model.tflite"
    const val SIDECAR = "model.meta.json"
    const val LABELS = "labels.txt"

    fun load(assets: AssetManager): LoadedModel {
        val sidecar = SidecarParser.parse(assets.open(SIDECAR).use { it.readBytes().toString(Charsets.UTF_8) })
        val map = { mapModel(assets) }
        val sha256 = Sha256.hex(map())
        sidecar.checkModel(sha256)
        val labels = try {
            Labels.parse(assets.open(LABELS).use { it.readBytes().toString(Charsets.UTF_8) })
        } catch (e: IOException) {
            null
        }
        return LoadedModel(sidecar, sha256, ModelIO(sidecar, labels), map)
    }

    private fun mapModel(assets: AssetManager): ByteBuffer = assets.openFd(MODEL).use { fd ->
        FileInputStream(fd.fileDescriptor).use { stream ->
            stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
        }
    }
}
