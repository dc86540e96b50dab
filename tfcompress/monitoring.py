"""Keras callbacks that watch a model being compressed: per-layer sparsity / unique values, predicted latency.

Both log to the `logs` dict Keras passes (so History and other callbacks see
them) and, with a log dir, to TensorBoard. `tfcompress.stages` adds them to
every stage; they work in any `fit`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def _identity(model: Any) -> Any:
    return model


def _compression_logger_base() -> type:
    from tfcompress.keras_compat import tf_keras

    return tf_keras.callbacks.Callback


class CompressionLogger(_compression_logger_base()):  # type: ignore[misc]
    """Logs per-layer sparsity and unique-value counts each epoch (logs dict + TensorBoard)."""

    def __init__(self, log_dir: str | None = None, unwrap: Callable[[Any], Any] | None = None) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.unwrap = unwrap or _identity  # the model being compressed inside a training wrapper (distill)
        self.history: list[dict[str, float]] = []
        self._writer = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        stats = kernel_stats(self.unwrap(self.model))
        row = {"epoch": epoch}
        for name, (zeros, unique, _size) in stats.items():
            row[f"{name}/sparsity"] = zeros
            row[f"{name}/unique"] = unique
        if stats:
            total = overall_sparsity(stats)
            row["mean_sparsity"] = total
            if logs is not None:
                logs["mean_sparsity"] = total
        self.history.append(row)
        if self.log_dir:
            from tfcompress.keras_compat import tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                for key, value in row.items():
                    if key != "epoch":
                        tf.summary.scalar(f"compression/{key}", value, step=epoch)
                self._writer.flush()


class LatencyLogger(_compression_logger_base()):  # type: ignore[misc]
    """Logs the predicted latency of the model being compressed, each epoch (logs dict + TensorBoard).

    The model (training wrappers stripped by `inference_model`) is converted to
    int8 and predicted on `device`'s profile. Latency depends on the
    architecture, not the weight values, so a prediction is reused while the
    architecture stays the same: converting costs about a second per new one.

    Args:
        device: shipped profile name ("host"), profile JSON path or DeviceProfile.
        log_dir: TensorBoard directory (None: logs dict only).
        inference_model: turns the training model into the one that ships
            (default: strip every technique's training wrappers).
    """

    def __init__(self, device: Any = "host", log_dir: str | None = None,
                 inference_model: Callable[[Any], Any] | None = None) -> None:
        from tfcompress.hardware.predict import LatencyModel
        from tfcompress.hardware.profile import resolve_profile
        from tfcompress.techniques import strip_training_wrappers

        super().__init__()
        self.latency_model = LatencyModel(resolve_profile(device))
        self.log_dir = log_dir
        self.inference_model = inference_model or strip_training_wrappers
        self.history: list[float] = []
        self._by_architecture: dict[str, float | None] = {}
        self.not_predicted: str | None = None  # why the last architecture has no prediction
        self._writer = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from tfcompress.hardware.predict import predict_latency_ms

        from tfcompress.errors import TfcompressError

        model = self.inference_model(self.model)
        arch = model.to_json()
        if arch not in self._by_architecture:
            try:
                self._by_architecture[arch] = predict_latency_ms(model, self.latency_model).total_ms
            except TfcompressError as exc:  # a model the predictor cannot cover is not a failed training
                self._by_architecture[arch] = None
                self.not_predicted = f"not predicted ({exc.message[:300]})"
        ms = self._by_architecture[arch]
        if ms is None:
            return
        self.history.append(ms)
        if logs is not None:
            logs["predicted_latency_ms"] = ms
        if self.log_dir:
            from tfcompress.keras_compat import tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                tf.summary.scalar("compression/predicted_latency_ms", ms, step=epoch)
                self._writer.flush()


def kernel_stats(model: Any) -> dict[str, tuple[float, int, int]]:
    """{layer: (fraction of zero kernel weights, unique values, size)} for Conv/Dense kernels, wrappers seen through."""
    out: dict[str, tuple[float, int, int]] = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        kernel = _effective_kernel(layer)
        if kernel is None or kernel.size < 64:
            continue
        out[inner.name] = (float(np.mean(kernel == 0)), int(np.unique(kernel).size), int(kernel.size))
    return out


def overall_sparsity(stats: dict[str, tuple[float, int, int]]) -> float:
    """Fraction of zeros over all kernels of a `kernel_stats` result, weighted by size."""
    total = sum(size for _, _, size in stats.values())
    return sum(zeros * size for zeros, _, size in stats.values()) / total if total else 0.0


def _effective_kernel(layer: Any) -> np.ndarray | None:
    """The kernel as the layer computes with it (pruning mask / cluster centroids applied)."""
    for w in getattr(layer, "weights", []):
        name = w.name.split("/")[-1]
        if name.startswith("kernel") or name.startswith("depthwise_kernel"):
            value = w.numpy()
            mask = next((m for m in layer.weights if m.name.split("/")[-1].startswith("mask")), None)
            return value * mask.numpy() if mask is not None and mask.shape == w.shape else value
    return None
