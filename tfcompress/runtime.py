"""The one seam to the LiteRT runtime (no TensorFlow import here).

`ai_edge_litert` is the maintained runtime; `tflite_runtime` (last released
2023) is accepted as a fallback so the same code runs on old edge images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The standalone timing script (copied onto devices, so it imports nothing from tfcompress) is the
# one place that knows the runtime modules and resolvers; this seam builds on it.
from tfcompress.edge.edge_profile import RESOLVERS, RUNTIMES, create_interpreter
from tfcompress.edge.edge_profile import load_runtime as _load_runtime_module

__all__ = ["Runtime", "RESOLVERS", "RUNTIMES", "load_runtime", "make_interpreter", "runtime_version"]


@dataclass(frozen=True)
class Runtime:
    """An importable LiteRT interpreter module."""

    module: Any
    package: str
    version: str


def load_runtime() -> Runtime:
    """Import the first available LiteRT interpreter module.

    Raises:
        ImportError: neither ai-edge-litert nor tflite-runtime is installed.
    """
    module, package, version = _load_runtime_module()
    return Runtime(module, package, version)


def make_interpreter(model_content: bytes, *, num_threads: int = 1, resolver: str = "default") -> Any:
    """Create and allocate an interpreter for a .tflite flatbuffer.

    Args:
        model_content: the .tflite bytes.
        num_threads: CPU threads for the kernels / XNNPACK.
        resolver: a key of RESOLVERS.
    """
    from tfcompress.quiet import captured_output

    rt = load_runtime()
    with captured_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate" and friends
        return create_interpreter(rt.module, model_content, num_threads=num_threads, resolver=resolver)


def runtime_version() -> str:
    """'ai-edge-litert 2.3.0' or similar."""
    rt = load_runtime()
    return f"{rt.package} {rt.version}"
