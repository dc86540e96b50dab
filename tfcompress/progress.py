"""Progress bars for long work (training, stages), drawn with rich."""

from __future__ import annotations

from typing import Any


def _progress_callback_base() -> type:
    from tfcompress.keras_compat import tf_keras

    return tf_keras.callbacks.Callback


class RichProgress(_progress_callback_base()):  # type: ignore[misc]
    """A Keras callback drawing one rich progress bar over all training steps."""

    def __init__(self, epochs: int, console: Any, label: str = "training") -> None:
        super().__init__()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.epochs = epochs
        self.progress = Progress(
            TextColumn(f"[bold]{label}[/] {{task.description}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        steps = self.params.get("steps") or 1
        self.progress.start()
        self.task = self.progress.add_task(f"epoch 1/{self.epochs}", total=steps * self.epochs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.progress.advance(self.task)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        acc = (logs or {}).get("accuracy")
        tail = f" (train acc {acc:.3f})" if acc is not None else ""
        self.progress.update(self.task, description=f"epoch {min(epoch + 2, self.epochs)}/{self.epochs}{tail}")

    def on_train_end(self, logs: dict | None = None) -> None:
        self.progress.stop()
