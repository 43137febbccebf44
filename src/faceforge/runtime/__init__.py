"""Which engine runs an ONNX graph on this machine, and in which precision.

Every place faceforge runs an ONNX graph (detectors, ONNX embedders, the landmark model) opens it
through :func:`faceforge.runtime.sessions.open_session`. ``engine`` is ``ENGINE[:PRECISION]``:
``auto`` (default), ``onnxruntime``, ``openvino``, ``openvino:bf16``, ``auto:fp32`` ... ``auto``
measures the candidates this CPU supports once per model and machine (:mod:`faceforge.runtime.choice`)
and keeps the fastest whose outputs match ONNX Runtime fp32; :mod:`faceforge.runtime.cpu` reads the
CPU's features. Layer 0: it needs only ``errors`` and ``atomic``; the callers pass in what to compare.
"""
