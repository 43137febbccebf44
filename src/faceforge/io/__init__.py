"""The bottom layer: image decoding (the one gate), identity-folder files, progress lines.

Everything in faceforge may import it; it imports nothing of faceforge but ``errors`` and
``atomic`` (the other bottom-layer modules).
"""
