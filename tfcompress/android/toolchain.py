"""The tools the Android checks run here, where `.ci/android_setup.sh` puts them, and how they are called.

Nothing here builds an APK: the Android Gradle Plugin, `android.jar` and the LiteRT AAR come from Google's
Maven, which these machines cannot reach, so the app is built in Android Studio (docs/android.md). What does
run here, from Debian and npm packages: `kotlinc` compiles the app's pure-Kotlin core (then its tests run on
the JVM) and compile-checks the Activity against stubs of the Android / LiteRT classes it calls; `aapt2`
links the manifest and resources against `framework-res.apk` (API 29); `javac` compiles the stubs.

    tools = find_toolchain()
    tools.missing("kotlinc", "java")           # [] when both are there
    compile_kotlin(tools, sources, out / "core.jar").check("the core")
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tfcompress.errors import TfcompressError

__all__ = [
    "INSTALL_HINT",
    "PREFIX_ENV",
    "REQUIRE_ENV",
    "ToolRun",
    "Toolchain",
    "aapt2_link",
    "compile_java",
    "compile_kotlin",
    "find_toolchain",
    "run_main",
    "sources",
]

PREFIX_ENV = "TFCOMPRESS_ANDROID_TOOLS"
"""Where `.ci/android_setup.sh` installs kotlinc (default /opt/tfcompress-android)."""
DEFAULT_PREFIX = Path("/opt/tfcompress-android")
REQUIRE_ENV = "TFCOMPRESS_REQUIRE_ANDROID_TOOLS"
"""Set to 1 (CI) and a missing tool fails the Android checks instead of skipping them."""
INSTALL_HINT = (
    "run `bash .ci/android_setup.sh` (apt: aapt, android-framework-res, default-jdk-headless; "
    "npm: kotlin-compiler into $TFCOMPRESS_ANDROID_TOOLS, default /opt/tfcompress-android)"
)
FRAMEWORK_RES = (Path("/usr/share/android-framework-res/framework-res.apk"),)
"""Where Debian's android-framework-res puts the API 29 framework resources."""


@dataclass(frozen=True)
class Toolchain:
    """Paths of the tools (None: not found)."""

    kotlinc: Path | None
    kotlin_stdlib: Path | None
    java: Path | None
    javac: Path | None
    aapt2: Path | None
    framework_res: Path | None

    def missing(self, *tools: str) -> list[str]:
        """The named tools (field names) that were not found."""
        return [t for t in tools if getattr(self, t) is None]


def find_toolchain(prefix: str | Path | None = None) -> Toolchain:
    """The tools at `.ci/android_setup.sh`'s paths, else on PATH."""
    root = Path(prefix or os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX)
    home = root / "kotlinc" / "node_modules" / "kotlin-compiler"
    kotlinc = _file(home / "bin" / "kotlinc") or _which("kotlinc")
    stdlib = None
    if kotlinc is not None:  # bin/kotlinc -> lib/kotlin-stdlib.jar of the same distribution
        stdlib = _file(kotlinc.resolve().parent.parent / "lib" / "kotlin-stdlib.jar")
    return Toolchain(
        kotlinc=kotlinc,
        kotlin_stdlib=stdlib,
        java=_which("java"),
        javac=_which("javac"),
        aapt2=_which("aapt2"),
        framework_res=next((p for p in FRAMEWORK_RES if p.is_file()), None),
    )


def _file(path: Path) -> Path | None:
    return path if path.is_file() else None


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


@dataclass(frozen=True)
class ToolRun:
    """One tool invocation: its command, exit code, output (stdout + stderr) and duration."""

    command: tuple[str, ...]
    returncode: int
    output: str
    seconds: float
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self, what: str) -> ToolRun:
        """This run, or a TfcompressError with the tool's output when it failed."""
        if not self.ok:
            raise TfcompressError(
                f"{what} failed (exit {self.returncode}): {self.output.strip()[-4000:]}",
                f"command: {' '.join(self.command)}",
            )
        return self


def _run(command: Sequence[str | Path], timeout: float, cwd: Path | None = None) -> ToolRun:
    cmd = tuple(str(c) for c in command)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        code, output = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, output = 124, f"{out}\ntimed out after {timeout:.0f} s"
    return ToolRun(cmd, code, output, time.perf_counter() - start)


def sources(*roots: Path, suffix: str = ".kt") -> list[Path]:
    """Every file ending in `suffix` under the roots, sorted (a stable compile order)."""
    return sorted(p for root in roots for p in root.rglob(f"*{suffix}") if p.is_file())


def _need(tools: Toolchain, *names: str) -> None:
    missing = tools.missing(*names)
    if missing:
        raise TfcompressError(f"{', '.join(missing)} not found", INSTALL_HINT)


def _digest(files: Sequence[Path], extra: Sequence[str]) -> str:
    h = hashlib.sha256()
    for item in extra:
        h.update(item.encode() + b"\0")
    for f in files:
        for part in sorted(f.rglob("*")) if f.is_dir() else [f]:
            if part.is_file():
                h.update(str(part).encode() + b"\0" + part.read_bytes())
    return h.hexdigest()


def compile_kotlin(
    tools: Toolchain, files: Sequence[Path], out_jar: Path, classpath: Sequence[Path] = (), timeout: float = 600
) -> ToolRun:
    """`kotlinc files -d out_jar`; reused when `out_jar` was built from the same sources, classpath and kotlinc.

    The reuse is keyed on a digest written beside the jar, so several test modules of one session share one
    compile and an edited source always compiles again.
    """
    _need(tools, "kotlinc")
    stamp = out_jar.with_suffix(".inputs-sha256")
    digest = _digest([*files, *classpath], [str(tools.kotlinc), *(str(p) for p in classpath)])
    command = [tools.kotlinc, "-nowarn", "-jvm-target", "17"]
    if classpath:
        command += ["-cp", os.pathsep.join(str(p) for p in classpath)]
    command += [*files, "-d", out_jar]
    if out_jar.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return ToolRun(tuple(str(c) for c in command), 0, "reused the jar compiled from the same inputs", 0.0, True)
    out_jar.parent.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    run = _run(command, timeout)
    if run.ok:
        stamp.write_text(digest)
    return run


def compile_java(
    tools: Toolchain, files: Sequence[Path], out_dir: Path, classpath: Sequence[Path] = (), timeout: float = 300
) -> ToolRun:
    """`javac --release 17 -d out_dir files` (the Android / LiteRT stubs and aapt2's R.java)."""
    _need(tools, "javac")
    out_dir.mkdir(parents=True, exist_ok=True)
    command: list[str | Path] = [tools.javac, "--release", "17", "-nowarn", "-d", out_dir]
    if classpath:
        command += ["-cp", os.pathsep.join(str(p) for p in classpath)]
    return _run([*command, *files], timeout)


def run_main(
    tools: Toolchain, classpath: Sequence[Path], main_class: str, args: Sequence[str | Path] = (), timeout: float = 300
) -> ToolRun:
    """`java -cp classpath:kotlin-stdlib main_class args`."""
    _need(tools, "java", "kotlin_stdlib")
    cp = os.pathsep.join(str(p) for p in [*classpath, tools.kotlin_stdlib])
    return _run([tools.java, "-cp", cp, main_class, *args], timeout)


def aapt2_link(
    tools: Toolchain,
    manifest: Path,
    res: Path,
    out_apk: Path,
    *,
    work: Path,
    assets: Path | None = None,
    java_out: Path | None = None,
    no_compress: Sequence[str] = (),
    timeout: float = 120,
) -> ToolRun:
    """`aapt2 compile` the resources, then `aapt2 link` them with `manifest` against framework-res.apk.

    `java_out` receives R.java; `no_compress` extensions are stored uncompressed (`-0`), as Gradle's
    `androidResources.noCompress` does.
    """
    _need(tools, "aapt2", "framework_res")
    work.mkdir(parents=True, exist_ok=True)
    compiled = work / "res.zip"
    run = _run([tools.aapt2, "compile", "--dir", res, "-o", compiled], timeout)
    if not run.ok:
        return run
    command: list[str | Path] = [tools.aapt2, "link", "-o", out_apk, "-I", tools.framework_res, "--manifest", manifest]
    if assets is not None:
        command += ["-A", assets]
    if java_out is not None:
        java_out.mkdir(parents=True, exist_ok=True)
        command += ["--java", java_out]
    for ext in no_compress:  # this aapt2 matches the file name's end: "tflite" alone would not match "m.tflite"
        command += ["-0", ext if ext.startswith(".") else f".{ext}"]
    return _run([*command, compiled], timeout)
