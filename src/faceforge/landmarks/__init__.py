"""88-point facial landmarks: a small CNN regressing points from a square face crop.

``crop`` (square crop geometry, flips), ``model`` (any registered backbone with 176 outputs),
``loss`` (MSE, wing), ``metrics`` (MSE/MAE in crop pixels, NME, per group), ``label_file`` (CSV/TSV
labels), ``samples`` (training samples, augmentation, cleaning), ``train`` / ``evaluate``,
``predict`` (detector + landmarks on images; ``load('builtin')`` is the shipped model), ``draw`` (images
and videos), ``export`` (ONNX), ``schemes`` (iBUG 68 beside the 88, 68 -> 88), ``teacher`` (real labels
from dlib's 68-point predictor).
Importing this package loads none of them.
"""
