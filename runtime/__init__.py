"""spamcam's torch-free inference side: pre-processing, backends, post-processing, metrics.

Imports nothing heavier than numpy and OpenCV at module level, so that a Jetson with JetPack's
OpenCV and TensorRT (or ONNX Runtime) runs it without PyTorch.
"""
