"""Face detectors registered in ``DETECTORS``: ``retinaface`` (default) and ``mtcnn``."""

from faceforge.align.detectors.base import LANDMARK_NAMES, Detector, Face, get_detector

__all__ = ["LANDMARK_NAMES", "Detector", "Face", "get_detector"]
