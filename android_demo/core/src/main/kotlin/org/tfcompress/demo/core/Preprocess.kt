package org.tfcompress.demo.core

/** A rectangle of an image, in pixels. */
data class CropRect(val x: Int, val y: Int, val width: Int, val height: Int)

/**
 * Pixels -> model-space floats, the way tfcompress prepared the calibration images:
 * Pillow's gray conversion, then `pixel * scale + offset` in float32 (`tfcompress.data.Scaling.apply`).
 * Resizing is left to Android (`Bitmap.createScaledBitmap`); it is not bit-identical to Pillow's resize.
 */
object Preprocess {
    /** Pillow's RGB -> "L" (ITU-R 601-2 luma, with the integer rounding of Pillow's Convert.c). */
    fun luma(r: Int, g: Int, b: Int): Int = (r * 19595 + g * 38470 + b * 7471 + 0x8000) ushr 16

    /**
     * ARGB_8888 pixels (row-major, as `Bitmap.getPixels` gives them) -> 0..255 channel values in HWC order:
     * gray through [luma] for 1 channel, R, G, B for 3; alpha is ignored. `invert` turns a dark object on a
     * light background into the light-on-dark look of Fashion-MNIST.
     */
    fun channels(argb: IntArray, image: ImageShape, invert: Boolean = false): IntArray {
        require(argb.size == image.pixels) { "${argb.size} pixels for a ${image.width}x${image.height} input" }
        val out = IntArray(image.size)
        for (p in argb.indices) {
            val c = argb[p]
            val r = (c shr 16) and 0xFF
            val g = (c shr 8) and 0xFF
            val b = c and 0xFF
            if (image.channels == 1) {
                out[p] = flip(luma(r, g, b), invert)
            } else {
                out[3 * p] = flip(r, invert)
                out[3 * p + 1] = flip(g, invert)
                out[3 * p + 2] = flip(b, invert)
            }
        }
        return out
    }

    private fun flip(v: Int, invert: Boolean) = if (invert) 255 - v else v

    /** 0..255 values (HWC) -> `pixel * scale + offset` per channel, each step rounded to float32 as numpy does. */
    fun scale(pixels: IntArray, channels: Int, scaling: PixelScaling): FloatArray {
        val scales = FloatArray(channels) { scaling.scaleOf(it) }
        val offsets = FloatArray(channels) { scaling.offsetOf(it) }
        return FloatArray(pixels.size) { i ->
            val c = i % channels
            val scaled = pixels[i].toFloat() * scales[c]
            scaled + offsets[c]
        }
    }

    /** The largest centered rectangle of `width` x `height` with the model input's aspect ratio (width / height). */
    fun centerCrop(width: Int, height: Int, aspect: Double): CropRect {
        require(width > 0 && height > 0 && aspect > 0.0) { "empty image or aspect ratio" }
        return if (width.toDouble() / height > aspect) {
            val w = Math.round(height * aspect).toInt().coerceIn(1, width)
            CropRect((width - w) / 2, 0, w, height)
        } else {
            val h = Math.round(width / aspect).toInt().coerceIn(1, height)
            CropRect(0, (height - h) / 2, width, h)
        }
    }

    /** A power-of-two `BitmapFactory.Options.inSampleSize` that decodes at least `target` pixels each way. */
    fun sampleSize(width: Int, height: Int, targetWidth: Int, targetHeight: Int): Int {
        var size = 1
        while (width / (size * 2) >= targetWidth && height / (size * 2) >= targetHeight) size *= 2
        return size
    }
}
