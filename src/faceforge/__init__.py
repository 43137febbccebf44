"""faceforge: the whole life of a face-recognition model."""

__version__ = "0.1.0"
