// Compile stub: org.tensorflow.lite.Interpreter, as LiteRT's Java API keeps it.
@file:Suppress("unused", "UNUSED_PARAMETER")

package org.tensorflow.lite

import java.io.Closeable
import java.nio.ByteBuffer

class Interpreter(byteBuffer: ByteBuffer, options: Options?) : Closeable {
    class Options {
        fun setNumThreads(numThreads: Int): Options = this
    }

    constructor(byteBuffer: ByteBuffer) : this(byteBuffer, null)

    fun run(input: Any, output: Any): Unit = throw UnsupportedOperationException("stub: no interpreter on the JVM")

    override fun close() {}
}
