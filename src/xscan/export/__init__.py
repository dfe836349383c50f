"""ONNX export from a checkpoint alone: metadata, checks, parity gates, FP16/INT8, model cards.

Needs the ``train`` extra (torch, onnx, onnxslim). The exported file is run by the torch-free
:mod:`xscan.runtime`.
"""
