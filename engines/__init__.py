"""build-engine and compare-backends: the deployable forms of a model (TensorRT plans, ONNX Runtime
CPU models), built after export and calibration, and checked against the reference."""
