"""The Android app without Gradle: manifest and resources linked by aapt2, the Activity compiled against stubs.

Google's Maven (Android Gradle Plugin, android.jar, LiteRT) is out of reach here, so the app is not built:
aapt2 links app/src/main (manifest with what Gradle's merger adds, res/, assets/) against Debian's
framework-res.apk (API 29) and writes R.java; javac compiles R.java with android_demo/stubs; kotlinc compiles
the app's Kotlin against those and the core. Each check is also shown to fail on a broken copy.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import pytest

from tfcompress.android import toolchain
from tfcompress.android.project import ASSET_MODEL, merged_manifest, read_app_project

from test_android_core import APP, core_jar, require  # noqa: F401  (core_jar: the shared, digest-cached build)


@pytest.fixture(scope="module")
def project():
    return read_app_project(APP)


def link(project, manifest_text: str, work: Path, assets: Path | None = None) -> toolchain.ToolRun:
    tools = toolchain.find_toolchain()
    require(tools, "aapt2", "framework_res")
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / "AndroidManifest.xml"
    manifest.write_text(manifest_text)
    return toolchain.aapt2_link(tools, manifest, project.res, work / "app.apk", work=work, assets=assets,
                                java_out=work / "gen", no_compress=project.no_compress)


@pytest.fixture(scope="module")
def linked(project, tmp_path_factory):
    """The app's manifest and resources linked, with a stand-in model in the assets (compressible zeros)."""
    work = tmp_path_factory.mktemp("aapt2")
    assets = work / "assets"
    assets.mkdir()
    (assets / ASSET_MODEL).write_bytes(bytes(64 * 1024))
    (assets / "labels.txt").write_text("a\n" * 1000)
    run = link(project, merged_manifest(project), work, assets)
    assert run.ok, run.output
    return work


def test_manifest_and_resources_link_against_the_framework(linked, project):
    r_java = (linked / "gen" / Path(*project.namespace.split(".")) / "R.java").read_text()
    for view_id in ("camera", "gallery", "benchmark", "use_gpu", "use_nnapi", "benchmark_log"):
        assert re.search(rf"\bint {view_id}\s*=", r_java), view_id
    with zipfile.ZipFile(linked / "app.apk") as apk:
        names = apk.namelist()
        assert "AndroidManifest.xml" in names and "res/layout/activity_main.xml" in names


def test_the_model_is_stored_uncompressed_as_gradle_is_told(linked, project):
    """app/build.gradle.kts's noCompress: a .tflite must be stored, or the app cannot memory-map it."""
    assert "tflite" in project.no_compress
    with zipfile.ZipFile(linked / "app.apk") as apk:
        assert apk.getinfo(f"assets/{ASSET_MODEL}").compress_type == zipfile.ZIP_STORED
        assert apk.getinfo("assets/labels.txt").compress_type == zipfile.ZIP_DEFLATED  # the check can tell them apart


@pytest.mark.parametrize("old, new, needle", [
    ('android:exported="true"', 'android:exportedd="true"', "attribute android:exportedd not found"),
    ('android:screenOrientation="portrait"', 'android:screenOrientation="sideways"', "'sideways' is incompatible"),
])
def test_a_bad_manifest_attribute_fails_the_link(project, tmp_path, old, new, needle):
    text = merged_manifest(project)
    assert old in text
    run = link(project, text.replace(old, new), tmp_path)
    assert not run.ok and needle in run.output, run.output


@pytest.fixture(scope="module")
def stub_classes(linked, project, tmp_path_factory):
    """android_demo/stubs and the linked R.java, compiled with javac."""
    tools = toolchain.find_toolchain()
    require(tools, "javac")
    out = tmp_path_factory.mktemp("stub-classes")
    files = [*toolchain.sources(project.stubs, suffix=".java"), *toolchain.sources(linked / "gen", suffix=".java")]
    toolchain.compile_java(tools, files, out).check("compiling the stubs and R.java")
    return out


def compile_app(app_sources: Path, stub_classes: Path, core_jar: Path, out: Path) -> toolchain.ToolRun:
    tools = toolchain.find_toolchain()
    return toolchain.compile_kotlin(tools, toolchain.sources(app_sources), out, classpath=[stub_classes, core_jar])


def test_the_app_compiles_against_the_stubs_and_the_core(project, stub_classes, core_jar, tmp_path):  # noqa: F811
    run = compile_app(project.app_sources, stub_classes, core_jar, tmp_path / "app.jar")
    assert run.ok, run.output
    with zipfile.ZipFile(tmp_path / "app.jar") as jar:
        assert "org/tfcompress/demo/MainActivity.class" in jar.namelist()


def test_a_type_error_in_the_activity_fails_the_compile(project, stub_classes, core_jar, tmp_path):  # noqa: F811
    copy = tmp_path / "java"
    shutil.copytree(project.app_sources, copy)
    activity = copy / "org" / "tfcompress" / "demo" / "MainActivity.kt"
    line = "val warmup = number(warmupField, 10, 0..10_000)"
    text = activity.read_text()
    assert line in text
    activity.write_text(text.replace(line, line.replace("val warmup =", "val warmup: String =")))
    run = compile_app(copy, stub_classes, core_jar, tmp_path / "broken.jar")
    assert not run.ok
    assert "MainActivity.kt" in run.output and "type mismatch" in run.output, run.output
