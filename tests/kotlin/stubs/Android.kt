// Compile stubs: the Android classes the generated Kotlin uses, same signatures.
@file:Suppress("unused", "UNUSED_PARAMETER")

package android.graphics

import java.io.ByteArrayInputStream
import javax.imageio.ImageIO

class Bitmap(val width: Int, val height: Int, private val argb: IntArray, val config: Config = Config.ARGB_8888) {
    enum class Config { ALPHA_8, RGB_565, ARGB_4444, ARGB_8888, RGBA_F16, HARDWARE, RGBA_1010102 }

    fun getPixels(pixels: IntArray, offset: Int, stride: Int, x: Int, y: Int, width: Int, height: Int) {
        for (row in 0 until height) {
            for (column in 0 until width) {
                pixels[offset + row * stride + column] = argb[(y + row) * this.width + x + column]
            }
        }
    }

    fun copy(config: Config, isMutable: Boolean): Bitmap = Bitmap(width, height, argb, config)

    companion object {
        @JvmStatic
        fun createBitmap(source: Bitmap, x: Int, y: Int, width: Int, height: Int): Bitmap {
            val argb = IntArray(width * height)
            source.getPixels(argb, 0, width, x, y, width, height)
            return Bitmap(width, height, argb)
        }

        @JvmStatic
        fun createScaledBitmap(src: Bitmap, dstWidth: Int, dstHeight: Int, filter: Boolean): Bitmap =
            if (src.width == dstWidth && src.height == dstHeight) src
            else throw UnsupportedOperationException("the stub does not scale")
    }
}

object BitmapFactory {
    /** A PNG as Android decodes it to ARGB_8888: grey samples copied to r, g and b, unpremultiplied here. */
    @JvmStatic
    fun decodeByteArray(data: ByteArray, offset: Int, length: Int): Bitmap {
        val image = ImageIO.read(ByteArrayInputStream(data, offset, length))
        val raster = image.raster
        val bands = raster.numBands
        val argb = IntArray(image.width * image.height)
        val sample = IntArray(bands)
        for (y in 0 until image.height) {
            for (x in 0 until image.width) {
                raster.getPixel(x, y, sample)
                val (r, g, b) = if (bands < 3) Triple(sample[0], sample[0], sample[0])
                    else Triple(sample[0], sample[1], sample[2])
                val a = if (bands == 2 || bands == 4) sample[bands - 1] else 255
                argb[y * image.width + x] = (a shl 24) or (r shl 16) or (g shl 8) or b
            }
        }
        return Bitmap(image.width, image.height, argb)
    }
}
