"""The device-side profiler on emulated 64-bit ARM Linux (issue 6). Opt-in: TFCOMPRESS_QEMU_TESTS=1.

    TFCOMPRESS_QEMU_TESTS=1 python3 -m pytest -q tests/test_edge_qemu.py

`.ci/qemu_arm64_env.sh` builds (once, cached under $TFCOMPRESS_QEMU_DIR or
~/.cache/tfcompress/qemu-arm64; about half a minute cold) a Debian bookworm arm64 root with
Python 3.11 plus the aarch64 wheels of numpy and ai-edge-litert 1.4.0, and nothing else:
no TensorFlow, no tfcompress. The bundle's edge_profile.py runs there under
qemu-aarch64-static exactly as it would on a Raspberry Pi, and on x86 with this machine's
ai-edge-litert (2.3.0 when written).

Bit identity (checked when this test was written; qemu's default "max" CPU and also
-cpu cortex-a53 / cortex-a76 / neoverse-n1 / a64fx give the same hashes):
  * resolver "default" (AUTO: builtin kernels + the XNNPACK delegate, the default in both
    1.4.0 and 2.3.0): the int8 outputs of every kernel (CONV_2D, DEPTHWISE_CONV_2D, ADD, MEAN,
    FULLY_CONNECTED) are bit-identical on x86_64 and aarch64. This is the one asserted.
  * resolver "builtin" (BUILTIN_WITHOUT_DEFAULT_DELEGATES, no XNNPACK): CONV_2D differs by
    +-1 in a few output elements (4 of 2048 in a 16x16x8 3x3 conv). That is the architecture,
    not the runtime version: ai-edge-litert 1.4.0 on x86_64 gives the same bytes as 2.3.0 on
    x86_64. On x86 the builtin optimized int8 conv rounds like the reference kernels
    (BUILTIN_REF); on aarch64 it rounds like XNNPACK. DEPTHWISE_CONV_2D, ADD, MEAN and
    FULLY_CONNECTED matched there too, but only "it runs, delegate none" is asserted for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV_SCRIPT = REPO / ".ci" / "qemu_arm64_env.sh"
QEMU = "qemu-aarch64-static"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("TFCOMPRESS_QEMU_TESTS") != "1",
        reason="opt-in: TFCOMPRESS_QEMU_TESTS=1 runs edge_profile.py under qemu arm64 "
        "(about 50 s the first time, 15 s cached)",
    ),
    pytest.mark.skipif(
        shutil.which(QEMU) is None,
        reason=f"{QEMU} not found: apt-get install qemu-user-static debootstrap (or run .ci/qemu_arm64_env.sh)",
    ),
]

OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"}


class Arm64:
    """Runs Python 3.11 of the emulated arm64 Debian root, with only numpy + ai-edge-litert importable."""

    def __init__(self, root: Path, site: Path) -> None:
        self.root, self.site = root, site

    def run(self, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "QEMU_LD_PREFIX": str(self.root),
            "PYTHONPATH": str(self.site),
            "PYTHONNOUSERSITE": "1",
        }
        return subprocess.run([QEMU, str(self.root / "usr" / "bin" / "python3.11"), *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def arm64() -> Arm64:
    proc = subprocess.run(["bash", str(ENV_SCRIPT)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{ENV_SCRIPT.name} failed:\n{proc.stderr[-3000:]}"
    lines = proc.stdout.split()
    assert len(lines) == 2, proc.stdout
    root, site = (Path(p) for p in lines)
    assert (root / "usr" / "bin" / "python3.11").is_file() and (site / "ai_edge_litert").is_dir()
    return Arm64(root, site)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """An edge bundle of a MobileNet-style block at 32x32: conv, depthwise, 1x1 conv, add, mean, dense."""
    from tfcompress.hardware.bundle import export_bundle
    from tfcompress.keras_compat import tf_keras

    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    x = tf_keras.Input((32, 32, 3), batch_size=1)
    y = L.ReLU(6.0)(L.Conv2D(16, 3, strides=2, padding="same")(x))
    d = L.ReLU(6.0)(L.DepthwiseConv2D(3, padding="same")(y))
    p = L.Conv2D(16, 1)(d)
    a = L.Add()([y, p])
    g = L.GlobalAveragePooling2D()(a)
    model = tf_keras.Model(x, L.Dense(10)(g))
    out = tmp_path_factory.mktemp("edge") / "bundle"
    info = export_bundle([model], out, threads=1)
    assert info.n_kernels >= len(OPS), info
    return out


def _kernels(bundle_dir: Path) -> dict[str, str]:
    """digest -> op of the bundle's kernels."""
    data = json.loads((bundle_dir / "bundle.json").read_text())
    return {k["digest"]: k["key"]["op"] for k in data["kernels"]}


def _check_result(result: dict, kernels: dict[str, str], where: str) -> dict[str, str]:
    """digest -> output_sha256, after checking that every kernel was measured and none failed."""
    assert result["schema"] == "tfcompress.edge_result/1"
    assert result["failed"] == [], f"{where}: kernels failed: {result['failed']}"
    got = {k["digest"]: k["output_sha256"] for k in result["kernels"]}
    assert set(got) == set(kernels), f"{where}: measured {sorted(got)}, bundle has {sorted(kernels)}"
    for k in result["kernels"]:
        assert k["ms"] >= 0 and k["raw_ms"] > 0 and k["runs"] >= 1, (where, k)
    return got


def _x86(bundle_dir: Path, out: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, str(bundle_dir / "edge_profile.py"), str(bundle_dir), "-o", str(out),
                           *extra], cwd=out.parent, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"edge_profile.py on x86 failed:\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


def _aarch64(arm64: Arm64, bundle_dir: Path, out: Path, *extra: str) -> dict:
    proc = arm64.run([str(bundle_dir / "edge_profile.py"), str(bundle_dir), "-o", str(out),
                      "--runs", "7", "--warmup", "1", *extra], cwd=out.parent)
    assert proc.returncode == 0, f"edge_profile.py under qemu arm64 failed:\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_emulated_device_has_numpy_and_litert_but_no_tensorflow(arm64, tmp_path):
    ok = arm64.run(["-c", "import platform, numpy, ai_edge_litert.interpreter as i; "
                          "print(platform.machine(), hasattr(i, 'OpResolverType'))"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["aarch64", "True"]
    for module in ("tensorflow", "tfcompress"):
        proc = arm64.run(["-c", f"import {module}"], cwd=tmp_path)
        assert proc.returncode != 0 and f"No module named '{module}'" in proc.stderr, (module, proc.stderr)


def test_default_resolver_outputs_are_bit_identical_on_x86_and_aarch64(arm64, bundle, tmp_path):
    """XNNPACK (the default) gives the same int8 bytes for every kernel on both architectures."""
    kernels = _kernels(bundle)
    assert OPS <= set(kernels.values()), sorted(set(kernels.values()))

    x86 = _x86(bundle, tmp_path / "x86.json")
    arm = _aarch64(arm64, bundle, tmp_path / "aarch64.json")

    assert arm["machine"] == "aarch64"
    assert x86["machine"] != "aarch64"  # the comparison really crosses architectures
    assert arm["runtime"] == "ai-edge-litert 1.4.0" and arm["python"].startswith("3.11")
    assert arm["delegate"] == x86["delegate"] == "XNNPACK"
    assert arm["bundle_sha256"] == x86["bundle_sha256"]
    sha_x86 = _check_result(x86, kernels, "x86")
    sha_arm = _check_result(arm, kernels, "aarch64")
    differ = sorted(f"{kernels[d]} {d}" for d in kernels if sha_x86[d] != sha_arm[d])
    assert not differ, f"int8 outputs differ between x86 and aarch64 for: {differ}"

    # the desktop reads the device's result back into a profile
    from tfcompress.hardware.bundle import read_edge_result

    profile = read_edge_result(tmp_path / "aarch64.json")
    assert profile.runtime == "ai-edge-litert 1.4.0" and profile.delegate == "XNNPACK"


def test_builtin_resolver_runs_on_the_old_runtime(arm64, bundle, tmp_path):
    """--resolver builtin selects OpResolverType on ai-edge-litert 1.4.0 (outputs may differ, see above)."""
    kernels = _kernels(bundle)
    arm = _aarch64(arm64, bundle, tmp_path / "aarch64_builtin.json", "--resolver", "builtin")
    assert arm["machine"] == "aarch64" and arm["delegate"] == "none"
    _check_result(arm, kernels, "aarch64 builtin")
