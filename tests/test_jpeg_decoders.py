"""The decoding gate's JPEG fast path: PyTurboJPEG for large JPEGs when installed, OpenCV otherwise,
and the same pixels either way."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import shared_path
from faceforge.io import images


@pytest.fixture
def decoder(monkeypatch):
    """Choose the decoder for one test (the module looks TurboJPEG up once per process)."""

    def use(name: str) -> None:
        monkeypatch.setattr(images, "_TURBO", None if name == "turbojpeg" else False)
        if name == "turbojpeg" and images.jpeg_decoder() != "turbojpeg":
            pytest.skip("PyTurboJPEG or the system's libturbojpeg is not installed")

    return use


def test_opencv_alone_decodes_jpeg_to_rgb(decoder):
    decoder("opencv")
    data = shared_path("data", "photos", "obama.jpg").read_bytes()
    img = images.decode_image(data)
    ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    assert images.jpeg_decoder() == "opencv" and np.array_equal(img, ref)


def test_turbojpeg_gives_the_pixels_opencv_gives(decoder):
    data = shared_path("data", "photos", "obama3.jpg").read_bytes()  # a phone-size photo
    decoder("turbojpeg")
    assert images._decode_jpeg_turbo(data, "obama3.jpg") is not None  # the fast path is taken
    fast = images.decode_image(data)
    decoder("opencv")
    slow = images.decode_image(data)
    assert fast.shape == slow.shape and fast.dtype == np.uint8
    assert int(np.abs(fast.astype(int) - slow.astype(int)).max()) <= 2


def test_small_crops_and_broken_jpegs_go_to_opencv(decoder, tmp_path):
    decoder("turbojpeg")
    crop = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", crop)
    assert images._decode_jpeg_turbo(buf.tobytes(), "crop") is None  # under TURBO_MIN_PIXELS
    big = cv2.resize(crop, (640, 480))
    ok, buf = cv2.imencode(".jpg", big)
    cut = buf.tobytes()[:200]  # header intact, data cut: OpenCV decides, the gate reports
    with pytest.raises(images.CorruptImage):
        images.decode_image(cut, "cut.jpg")
