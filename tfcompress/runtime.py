"""The one seam to the LiteRT runtime (no TensorFlow import here).

`ai_edge_litert` is the maintained runtime; `tflite_runtime` (last released
2023) is accepted as a fallback so the same code runs on old edge images.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

_RUNTIMES: tuple[tuple[str, str], ...] = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)


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
    from importlib import metadata

    for module_name, package in _RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "unknown"
        return Runtime(module, package, version)
    raise ImportError("no LiteRT runtime: pip install ai-edge-litert")


# Resolver names users see -> OpResolverType member names.
RESOLVERS: dict[str, str] = {
    "default": "AUTO",  # builtin kernels + the default XNNPACK delegate
    "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",  # reference builtin kernels, no XNNPACK
}


def make_interpreter(model_content: bytes, *, num_threads: int = 1, resolver: str = "default") -> Any:
    """Create and allocate an interpreter for a .tflite flatbuffer.

    Args:
        model_content: the .tflite bytes.
        num_threads: CPU threads for the kernels / XNNPACK.
        resolver: a key of RESOLVERS.
    """
    from tfcompress.quiet import captured_output

    rt = load_runtime()
    op_resolver = getattr(rt.module.OpResolverType, RESOLVERS[resolver])
    with captured_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate" and friends
        interpreter = rt.module.Interpreter(
            model_content=model_content, num_threads=num_threads, experimental_op_resolver_type=op_resolver
        )
        interpreter.allocate_tensors()
    return interpreter


def runtime_version() -> str:
    """'ai-edge-litert 2.3.0' or similar."""
    rt = load_runtime()
    return f"{rt.package} {rt.version}"
