package org.tfcompress.demo.core

/**
 * A test runner in a page: JUnit cannot be fetched on the machines that run these checks, and the core needs
 * nothing more. Each test is a named block; a thrown exception fails it. [finish] prints "N passed, N failed"
 * and exits non-zero when any failed.
 */
class TestRunner {
    private var passed = 0
    private var failed = 0

    fun test(name: String, body: () -> Unit) {
        try {
            body()
            passed++
        } catch (e: Throwable) {
            failed++
            println("FAIL $name: ${e::class.java.simpleName}: ${e.message}")
        }
    }

    fun finish(): Nothing {
        println("$passed passed, $failed failed")
        kotlin.system.exitProcess(if (failed == 0) 0 else 1)
    }
}

fun check(condition: Boolean, message: () -> String) {
    if (!condition) throw AssertionError(message())
}

fun <T> checkEqual(actual: T, expected: T, what: String = "value") {
    if (actual != expected) throw AssertionError("$what: expected $expected, got $actual")
}

fun checkClose(actual: Double, expected: Double, tolerance: Double = 1e-9, what: String = "value") {
    if (Math.abs(actual - expected) > tolerance) throw AssertionError("$what: expected $expected, got $actual")
}

inline fun <reified E : Throwable> checkThrows(body: () -> Unit): E {
    try {
        body()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("expected ${E::class.java.simpleName}, got ${e::class.java.simpleName}: ${e.message}")
    }
    throw AssertionError("expected ${E::class.java.simpleName}, nothing was thrown")
}
