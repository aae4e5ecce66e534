// Compile stubs: android.content.Context and its AssetManager.
@file:Suppress("unused", "UNUSED_PARAMETER")

package android.content

import android.content.res.AssetManager

abstract class Context {
    abstract val assets: AssetManager
}
