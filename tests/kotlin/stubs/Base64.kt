// Stub of android.util.Base64 on java.util.Base64.
@file:Suppress("unused", "UNUSED_PARAMETER")

package android.util

object Base64 {
    const val DEFAULT = 0

    @JvmStatic
    fun decode(str: String, flags: Int): ByteArray = java.util.Base64.getMimeDecoder().decode(str)
}
