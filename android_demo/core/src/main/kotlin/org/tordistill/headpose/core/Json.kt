package org.tordistill.headpose.core

/**
 * A small JSON reader for model_meta.json and the golden files: the core has no dependencies, so it
 * cannot use a JSON library. Objects become [Map], arrays [List], numbers [Double], plus String,
 * Boolean and null. Malformed input raises [IllegalArgumentException] naming the offset.
 */
object Json {
    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipWs()
        val v = p.value()
        p.skipWs()
        require(p.pos == text.length) { "JSON: unexpected text at offset ${p.pos}" }
        return v
    }

    private fun bad(message: String): Nothing = throw IllegalArgumentException(message)

    private class Parser(val s: String) {
        var pos = 0

        fun skipWs() {
            while (pos < s.length && s[pos].isWhitespace()) pos++
        }

        fun peek(): Char {
            require(pos < s.length) { "JSON: unexpected end of input" }
            return s[pos]
        }

        fun next(): Char = peek().also { pos++ }

        fun value(): Any? {
            require(pos < s.length) { "JSON: unexpected end of input" }
            return when (val c = s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c.isDigit()) num() else bad("JSON: unexpected '$c' at offset $pos")
            }
        }

        private fun literal(word: String, v: Any?): Any? {
            require(s.startsWith(word, pos)) { "JSON: expected $word at offset $pos" }
            pos += word.length
            return v
        }

        private fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++
            skipWs()
            if (peek() == '}') { pos++; return out }
            while (true) {
                skipWs()
                require(peek() == '"') { "JSON: expected a key at offset $pos" }
                val k = str()
                skipWs()
                require(peek() == ':') { "JSON: expected ':' at offset $pos" }
                pos++
                skipWs()
                out[k] = value()
                skipWs()
                when (next()) {
                    ',' -> continue
                    '}' -> return out
                    else -> bad("JSON: expected ',' or '}' at offset ${pos - 1}")
                }
            }
        }

        private fun arr(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++
            skipWs()
            if (peek() == ']') { pos++; return out }
            while (true) {
                skipWs()
                out.add(value())
                skipWs()
                when (next()) {
                    ',' -> continue
                    ']' -> return out
                    else -> bad("JSON: expected ',' or ']' at offset ${pos - 1}")
                }
            }
        }

        private fun str(): String {
            val sb = StringBuilder()
            pos++
            while (true) {
                require(pos < s.length) { "JSON: unterminated string" }
                val c = next()
                when (c) {
                    '"' -> return sb.toString()
                    '\\' -> {
                        when (val e = next()) {
                            '"', '\\', '/' -> sb.append(e)
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> { sb.append(s.substring(pos, pos + 4).toInt(16).toChar()); pos += 4 }
                            else -> bad("JSON: bad escape '\\$e' at offset ${pos - 1}")
                        }
                    }
                    else -> sb.append(c)
                }
            }
        }

        private fun num(): Double {
            val start = pos
            while (pos < s.length && (s[pos].isDigit() || s[pos] in "+-.eE")) pos++
            // Java's parser rounds correctly, so a float written by Python's repr reads back to the same double.
            return s.substring(start, pos).toDoubleOrNull() ?: bad("JSON: bad number at offset $start")
        }
    }
}

/** Typed access to parsed JSON, with errors that name the missing key. */
@Suppress("UNCHECKED_CAST")
internal fun Map<String, Any?>.obj(key: String): Map<String, Any?> =
    this[key] as? Map<String, Any?> ?: throw MetaException("'$key' is missing or not an object")

internal fun Map<String, Any?>.objOrNull(key: String): Map<String, Any?>? {
    @Suppress("UNCHECKED_CAST")
    return this[key] as? Map<String, Any?>
}

internal fun Map<String, Any?>.list(key: String): List<Any?> =
    this[key] as? List<Any?> ?: throw MetaException("'$key' is missing or not a list")

internal fun Map<String, Any?>.str(key: String): String =
    this[key] as? String ?: throw MetaException("'$key' is missing or not a string")

internal fun Map<String, Any?>.num(key: String): Double =
    (this[key] as? Double) ?: throw MetaException("'$key' is missing or not a number")

internal fun Map<String, Any?>.doubles(key: String): DoubleArray =
    list(key).map { it as? Double ?: throw MetaException("'$key' must hold numbers") }.toDoubleArray()
