"""Device profiles, latency lookup tables (LUTs) and the latency predictor.

    profile = build_profile(models, device="host")           # lut.py: times single kernels
    predict_latency_ms(model_or_tflite, profile).total_ms    # lut.py: LUT + per-op regression + overhead

`profile` and `kernels` never import TensorFlow, so device-side tools can load
profiles and read kernel keys with only ai-edge-litert and numpy.
"""

from tfcompress.hardware.kernels import KernelKey, kernels_of
from tfcompress.hardware.profile import DeviceProfile, LutEntry, Provenance, load_profile, save_profile

__all__ = [
    "KernelKey",
    "kernels_of",
    "DeviceProfile",
    "LutEntry",
    "Provenance",
    "load_profile",
    "save_profile",
]
