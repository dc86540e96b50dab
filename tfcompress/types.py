"""Vocabulary shared by every module: enums and frozen dataclasses.

Modules that own a concept (data loading, the .tflite reader, verification)
define their own result dataclasses next to the code; what several modules
speak lives here.
"""

from __future__ import annotations

import enum


class Mode(str, enum.Enum):
    """What `convert` quantizes to."""

    INT8 = "int8"  # full integer: int8 weights and activations, int8 I/O by default
    INT16X8 = "int16x8"  # int16 activations, int8 weights (more accurate, fewer kernels)
    FLOAT16 = "float16"  # float16 weights, float compute
    DYNAMIC = "dynamic"  # int8 weights, float activations quantized on the fly

    @property
    def needs_calibration(self) -> bool:
        """Modes whose activation ranges come from representative data."""
        return self in (Mode.INT8, Mode.INT16X8)


class IOType(str, enum.Enum):
    """Dtype of the converted model's inputs and outputs."""

    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    FLOAT32 = "float32"


# The I/O dtype each mode gets when the user does not choose one.
DEFAULT_IO: dict[Mode, IOType] = {
    Mode.INT8: IOType.INT8,
    Mode.INT16X8: IOType.INT16,
    Mode.FLOAT16: IOType.FLOAT32,
    Mode.DYNAMIC: IOType.FLOAT32,
}

# The I/O dtypes each mode can produce.
ALLOWED_IO: dict[Mode, tuple[IOType, ...]] = {
    Mode.INT8: (IOType.INT8, IOType.UINT8, IOType.FLOAT32),
    Mode.INT16X8: (IOType.INT16, IOType.FLOAT32),
    Mode.FLOAT16: (IOType.FLOAT32,),
    Mode.DYNAMIC: (IOType.FLOAT32,),
}
