"""dlib's ResNet face descriptor (placeholder module; filled in below)."""
