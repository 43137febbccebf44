"""faceforge: the whole life of a face-recognition model."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # FaceAnalyzer is imported on first use so that ``import faceforge`` stays light (no torch/ORT)
    if name == "FaceAnalyzer":
        from faceforge.deploy.analyzer import FaceAnalyzer

        return FaceAnalyzer
    raise AttributeError(f"module 'faceforge' has no attribute {name!r}")
