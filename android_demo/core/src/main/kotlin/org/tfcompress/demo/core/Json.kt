package org.tfcompress.demo.core

/** A JSON document that cannot be read, or a value that cannot be written; the message says where. */
class JsonException(message: String) : Exception(message)

/**
 * The little JSON the app needs (the sidecar in, the benchmark file out), without a library: the core has no
 * dependencies, so it compiles and tests anywhere a JVM runs.
 *
 * Reading gives `Map<String, Any?>` (key order kept), `List<Any?>`, `String`, `Long` (integers), `Double`,
 * `Boolean` and `null`. Writing takes the same kinds plus `Int` / `Float`; a non-finite number is an error,
 * as it is for `tfcompress profile --import`.
 */
object Json {
    const val MAX_DEPTH = 64

    fun parse(text: String): Any? {
        val parser = Parser(text)
        parser.skipSpace()
        val value = parser.value(0)
        parser.skipSpace()
        if (!parser.atEnd()) throw parser.error("unexpected text after the document")
        return value
    }

    /** `value` as JSON, one entry per line indented by `indent` spaces per level (0: all on one line). */
    fun write(value: Any?, indent: Int = 1): String {
        val out = StringBuilder()
        writeValue(out, value, indent, 0)
        return out.toString()
    }

    private fun writeValue(out: StringBuilder, value: Any?, indent: Int, level: Int) {
        when (value) {
            null -> out.append("null")
            is Boolean -> out.append(value.toString())
            is Int, is Long, is Short, is Byte -> out.append(value.toString())
            is Double -> out.append(finite(value.toDouble()))
            is Float -> {
                if (!value.isFinite()) throw JsonException("cannot write the non-finite number $value")
                out.append(value.toString())
            }
            is String -> writeString(out, value)
            is Map<*, *> -> writeContainer(out, "{", "}", value.entries.toList(), indent, level) { entry ->
                val key = entry.key as? String ?: throw JsonException("object keys must be strings: ${entry.key}")
                writeString(out, key)
                out.append(if (indent > 0) ": " else ":")
                writeValue(out, entry.value, indent, level + 1)
            }
            is List<*> -> writeContainer(out, "[", "]", value, indent, level) { writeValue(out, it, indent, level + 1) }
            is DoubleArray -> writeValue(out, value.toList(), indent, level)
            is IntArray -> writeValue(out, value.toList(), indent, level)
            else -> throw JsonException("cannot write a ${value::class.java.simpleName} as JSON")
        }
    }

    private fun <T> writeContainer(
        out: StringBuilder, open: String, close: String, items: List<T>, indent: Int, level: Int, item: (T) -> Unit,
    ) {
        out.append(open)
        if (items.isEmpty()) {
            out.append(close)
            return
        }
        items.forEachIndexed { i, it ->
            if (i > 0) out.append(',')
            if (indent > 0) out.append('\n').append(" ".repeat(indent * (level + 1)))
            item(it)
        }
        if (indent > 0) out.append('\n').append(" ".repeat(indent * level))
        out.append(close)
    }

    private fun finite(value: Double): String {
        if (!value.isFinite()) throw JsonException("cannot write the non-finite number $value")
        return value.toString()
    }

    private fun writeString(out: StringBuilder, s: String) {
        out.append('"')
        for (c in s) {
            when {
                c == '"' -> out.append("\\\"")
                c == '\\' -> out.append("\\\\")
                c == '\n' -> out.append("\\n")
                c == '\r' -> out.append("\\r")
                c == '\t' -> out.append("\\t")
                c < ' ' || c == '\u007f' -> out.append("\\u").append(c.code.toString(16).padStart(4, '0'))
                else -> out.append(c)
            }
        }
        out.append('"')
    }

    private class Parser(private val s: String) {
        private var i = 0

        fun atEnd() = i >= s.length

        fun error(message: String) = JsonException("JSON at character $i: $message")

        fun skipSpace() {
            while (i < s.length && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++
        }

        private fun peek(): Char = if (i < s.length) s[i] else '\u0000'

        private fun expect(c: Char) {
            if (peek() != c) throw error("expected '$c'")
            i++
        }

        fun value(depth: Int): Any? {
            if (depth > MAX_DEPTH) throw error("nested deeper than $MAX_DEPTH levels")
            if (atEnd()) throw error("unexpected end of the document")
            val c = s[i]
            return when {
                c == '{' -> obj(depth)
                c == '[' -> array(depth)
                c == '"' -> string()
                c == 't' -> literal("true", true)
                c == 'f' -> literal("false", false)
                c == 'n' -> literal("null", null)
                c == '-' || c in '0'..'9' -> number()
                else -> throw error("unexpected '$c'")
            }
        }

        private fun literal(word: String, value: Any?): Any? {
            if (!s.startsWith(word, i)) throw error("expected $word")
            i += word.length
            return value
        }

        private fun obj(depth: Int): Map<String, Any?> {
            val map = LinkedHashMap<String, Any?>()
            expect('{')
            skipSpace()
            if (peek() == '}') {
                i++
                return map
            }
            while (true) {
                skipSpace()
                if (peek() != '"') throw error("expected a key in quotes")
                val key = string()
                skipSpace()
                expect(':')
                skipSpace()
                map[key] = value(depth + 1)
                skipSpace()
                when (peek()) {
                    ',' -> i++
                    '}' -> {
                        i++
                        return map
                    }
                    else -> throw error("expected ',' or '}'")
                }
            }
        }

        private fun array(depth: Int): List<Any?> {
            val list = ArrayList<Any?>()
            expect('[')
            skipSpace()
            if (peek() == ']') {
                i++
                return list
            }
            while (true) {
                skipSpace()
                list.add(value(depth + 1))
                skipSpace()
                when (peek()) {
                    ',' -> i++
                    ']' -> {
                        i++
                        return list
                    }
                    else -> throw error("expected ',' or ']'")
                }
            }
        }

        private fun string(): String {
            expect('"')
            val out = StringBuilder()
            while (true) {
                if (atEnd()) throw error("unterminated string")
                val c = s[i++]
                when {
                    c == '"' -> return out.toString()
                    c == '\\' -> {
                        if (atEnd()) throw error("unterminated escape")
                        when (val e = s[i++]) {
                            '"' -> out.append('"')
                            '\\' -> out.append('\\')
                            '/' -> out.append('/')
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000c')
                            'n' -> out.append('\n')
                            'r' -> out.append('\r')
                            't' -> out.append('\t')
                            'u' -> {
                                if (i + 4 > s.length) throw error("short \\u escape")
                                val code = s.substring(i, i + 4).toIntOrNull(16) ?: throw error("bad \\u escape")
                                out.append(code.toChar())
                                i += 4
                            }
                            else -> throw error("unknown escape '\\$e'")
                        }
                    }
                    c < ' ' -> throw error("control character in a string")
                    else -> out.append(c)
                }
            }
        }

        private fun digits(): Int {
            val start = i
            while (i < s.length && s[i] in '0'..'9') i++
            if (i == start) throw error("expected a digit")
            return i - start
        }

        private fun number(): Any {
            val start = i
            var integer = true
            if (peek() == '-') i++
            digits()
            if (peek() == '.') {
                integer = false
                i++
                digits()
            }
            if (peek() == 'e' || peek() == 'E') {
                integer = false
                i++
                if (peek() == '+' || peek() == '-') i++
                digits()
            }
            val text = s.substring(start, i)
            if (integer) text.toLongOrNull()?.let { return it }
            val value = text.toDouble()
            if (!value.isFinite()) throw error("number out of range: $text")
            return value
        }
    }
}

/** A document (sidecar, edge bundle) that parses as JSON but is not what the app reads; one line saying why. */
open class DocumentException(message: String) : Exception(message)

/** Typed reads from parsed JSON, each failure a [DocumentException] naming the key path (`outputs[0].scale`). */
internal object JsonRead {
    fun obj(value: Any?, where: String): Map<*, *> =
        value as? Map<*, *> ?: throw DocumentException("$where is not an object")

    fun list(value: Any?, where: String): List<*> =
        value as? List<*> ?: throw DocumentException("$where is not a list")

    fun string(value: Any?, where: String): String =
        value as? String ?: throw DocumentException("$where is not a string")

    fun number(value: Any?, where: String): Double {
        if (value is Boolean || value !is Number) throw DocumentException("$where is not a number")
        return value.toDouble()
    }

    fun int(value: Any?, where: String): Int {
        val long = value as? Long ?: throw DocumentException("$where is not an integer")
        if (long < Int.MIN_VALUE || long > Int.MAX_VALUE) throw DocumentException("$where is out of range: $long")
        return long.toInt()
    }

    fun field(map: Map<*, *>, key: String, where: String): Any? {
        if (!map.containsKey(key)) throw DocumentException("$where has no '$key'")
        return map[key]
    }
}
