"""Everything between a Keras model and a verified .tflite on disk.

`convert` drives the TFLite converter (the only place that calls it),
`tflite_file` reads the flatbuffer back, `verify` runs source and .tflite
side by side in LiteRT, `sidecar` writes the quantization parameters a
device-side app needs.
"""
