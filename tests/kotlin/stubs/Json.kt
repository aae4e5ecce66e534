// Compile stubs: org.json as Android ships it (the methods the generated code calls).
@file:Suppress("unused", "UNUSED_PARAMETER")

package org.json

class JSONObject(json: String) {
    fun getJSONObject(name: String): JSONObject = throw UnsupportedOperationException("stub")
    fun getJSONArray(name: String): JSONArray = throw UnsupportedOperationException("stub")
    fun getString(name: String): String = throw UnsupportedOperationException("stub")
    fun getDouble(name: String): Double = throw UnsupportedOperationException("stub")
}

class JSONArray {
    fun length(): Int = throw UnsupportedOperationException("stub")
    fun getJSONObject(index: Int): JSONObject = throw UnsupportedOperationException("stub")
    fun getDouble(index: Int): Double = throw UnsupportedOperationException("stub")
}
