"""Calibration and verification data: load, validate against the model, split.

`load_samples(source, specs)` turns whatever the user has into `Samples`: one
array per model input (first axis = samples, dtype = the input's dtype),
optional integer class labels, and a JSON-able record of every change made.
All checks happen here, before any conversion starts; a problem the user can
fix raises `DataError` naming the file / key / input / shape.

Accepted sources (checked in this order):

* **path** (`str` / `os.PathLike`):
    - `.npy`: one array = the inputs of a single-input model (no labels).
    - `.npz`: read like a dict element (below): inputs under `x_key`
      (comma-separated keys, one per input, for multi-input models), labels
      under `y_key` when that key exists (a non-default `y_key` must exist).
    - a directory of `.jpg/.jpeg/.png/.bmp` images: one subfolder per class
      (sorted subfolder names = class names, labels = their index; images are
      taken round-robin over classes so any prefix mixes classes), or a flat
      folder of images (no labels). Images are decoded with Pillow, converted
      to grayscale / RGB / RGBA from the model's channel count, resized to the
      model's H x W and scaled by `ImageSpec`. Single-input models only.
* **`tf.data.Dataset`**: elements as for iterables below; unbatched or batched
  (told apart per element by comparing ranks with the model input). An
  infinite dataset needs `max_samples`.
* **direct data**: an `np.ndarray` / tensor, a tuple or list, or a dict,
  read with the element rules below; the first axis is samples.
* **callable**: called with no arguments. If it returns an array/tensor, tuple
  or dict, that is direct data; a `tf.data.Dataset` is a dataset; any other
  iterable (a list, a generator) is iterated as batches (elements below).
* **iterator / generator** of batches (consumed once).

An *element* (one batch, or the whole direct data) is one of:

* an array: the single input (models with one input);
* a tuple/list of `n_inputs` arrays: one per input, no labels (`n_inputs > 1`);
* a pair `(x, y)`: `x` an array (one input) or a tuple/list/dict of arrays
  (several inputs), `y` the labels. For a one-input model a tuple of one array
  is `(x,)`;
* a dict: inputs under `x_key` (comma-separated for several); with the
  default `x_key` absent, under the model's input names or `arr_0, ..`;
  labels under `y_key` when present.

Each input array may carry a batch axis or not (a single sample): ranks are
compared with the model's. If the only difference is a missing trailing
channel axis of size 1, it is added (`"expand_channel_axis": true`).

Dtypes: data is cast to each input's dtype only when no value changes: floats
must be finite (NaN / Inf are reported with the first sample index), float
data for an integer input must be integer-valued and in range, bool inputs
take 0/1, strings / objects / complex are refused. uint8 data for a float
input is cast as is (with a "did you forget to scale?" warning in
`preprocessing` when values exceed 1.5), or scaled by `image` when given.

Labels: integer class ids (shape `(N,)` or `(N, 1)`), one-hot / scores
`(N, C)` (argmax taken) or strings (sorted names become `labels`). Labels that
are not class ids (e.g. float regression targets) are dropped, with a note in
`preprocessing`; a count that differs from the sample count is an error.

Modules, in the order data flows through them:

    specs.py     InputSpec (what the model expects), ImageSpec / Scaling (pixels -> floats)
    sources.py   which kind of source was passed, and its reader (tf.data, callables, iterators)
    files.py     .npy / .npz files;  images.py: image folders
    elements.py  one element -> per-input arrays, batches assembled and cut at max_samples
    checks.py    shape fitting, value-preserving casts, label normalization
    load.py      load_samples: the steps above, in order, with the preprocessing record
    samples.py   Samples, split (calibration / verification), representative_dataset
    resize.py    follow_inputs: image arrays resized when a stage changed the model's input size
"""

from __future__ import annotations

from tfcompress.data.images import IMAGE_SUFFIXES
from tfcompress.data.load import UINT8_WARNING, load_samples
from tfcompress.data.resize import fits_inputs, follow_inputs, input_shapes
from tfcompress.data.samples import Samples, representative_dataset, split
from tfcompress.data.specs import ImageSpec, InputSpec, Scaling, parse_scaling

__all__ = [
    "IMAGE_SUFFIXES",
    "UINT8_WARNING",
    "ImageSpec",
    "InputSpec",
    "Samples",
    "Scaling",
    "fits_inputs",
    "follow_inputs",
    "input_shapes",
    "load_samples",
    "parse_scaling",
    "representative_dataset",
    "split",
]
