"""Device profiles, latency lookup tables (LUTs) and the latency predictor.

The modules read as a pipeline; each imports only the ones above it:

    kernels.py    keys from a .tflite (KernelKey, kernels_of, to_tflite)
    ops.py        one table keyed by op type: the one-op model to time, the regression's cost features
    schema.py     pydantic field types, the key's JSON model, one-line errors
    measure.py    one-op models -> an edge bundle -> the one timing loop (tfcompress.edge.edge_profile), cached
    profile.py    the document: DeviceProfile, saved one entry per line
    predict.py    LUT + per-op regression + calibration: predict_latency_ms
    lut.py, bundle.py, importers/, validate.py
                  build a profile here, export a bundle for a device, import a device's
                  measurements, check predictions against measured latency

    profile = build_profile(models, device="host")           # lut.py
    predict_latency_ms(model_or_tflite, profile).total_ms    # predict.py

`kernels`, `profile` and `predict` never import TensorFlow (a Keras model given
to them is converted on demand), so tools can load profiles and predict from
.tflite files with only ai-edge-litert and numpy.
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
