"""The Android app's pure-Kotlin core (android_demo/core), compiled with kotlinc and tested on the JVM.

Skips without kotlinc / java (install: .ci/android_setup.sh); fails instead when
TFCOMPRESS_REQUIRE_ANDROID_TOOLS=1, as CI sets it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tfcompress.android import toolchain
from tfcompress.android.project import read_app_project

APP = Path(__file__).resolve().parents[1] / "android_demo"


def require(tools: toolchain.Toolchain, *names: str) -> None:
    missing = tools.missing(*names)
    if missing:
        reason = f"{', '.join(missing)} not found: {toolchain.INSTALL_HINT}"
        (pytest.fail if os.environ.get(toolchain.REQUIRE_ENV) == "1" else pytest.skip)(reason)


@pytest.fixture(scope="module")
def core_jar(tmp_path_factory) -> Path:
    """The core and its tests in one jar, compiled once per session (shared through the build digest)."""
    tools = toolchain.find_toolchain()
    require(tools, "kotlinc", "kotlin_stdlib", "java")
    project = read_app_project(APP)
    jar = tmp_path_factory.getbasetemp() / "android-build" / "core.jar"
    toolchain.compile_kotlin(tools, toolchain.sources(project.core_main, project.core_test), jar).check("compiling the core")
    return jar


def test_core_tests_pass_on_the_jvm(core_jar):
    tools = toolchain.find_toolchain()
    run = toolchain.run_main(tools, [core_jar], "org.tfcompress.demo.core.CoreTests")
    summary = re.search(r"^(\d+) passed, (\d+) failed$", run.output, re.MULTILINE)
    assert run.ok and summary, run.output
    assert int(summary.group(1)) >= 40 and summary.group(2) == "0", run.output


def test_the_core_imports_nothing_from_android():
    """The core compiles with plain kotlinc only because it stays free of android.* (and LiteRT)."""
    project = read_app_project(APP)
    for source in toolchain.sources(project.core_main, project.core_test):
        imports = re.findall(r"^import\s+([\w.]+)", source.read_text(), re.MULTILINE)
        assert not [i for i in imports if i.startswith(("android.", "androidx.", "org.tensorflow."))], source


def test_a_second_compile_of_the_same_sources_is_reused(core_jar):
    tools = toolchain.find_toolchain()
    project = read_app_project(APP)
    run = toolchain.compile_kotlin(tools, toolchain.sources(project.core_main, project.core_test), core_jar)
    assert run.ok and run.cached

