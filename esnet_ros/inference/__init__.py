"""Inference: devices, BatchNorm folding, ONNX export, quantization, backends and the one engine."""
