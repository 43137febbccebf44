"""Aligned face images in, embeddings out: the one layer below evaluation and deployment.

``load_embedder("m.ckpt" | "m.onnx" | "m.pt" | "dlib:resnet", card=...)`` gives an
:class:`~faceforge.embed.base.Embedder`; :func:`~faceforge.embed.extract.embed_images` runs it
over an image set; :mod:`~faceforge.embed.card` says how a foreign model is fed.
"""
