"""The HTTP service on a real uvicorn server on loopback: auth, limits, hostile images, load."""

from __future__ import annotations

import base64
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")
httpx = pytest.importorskip("httpx")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
KEY = "test-key-0123456789abcdef"
LIMIT = 1_000_000


def png_bytes(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def bomb_png(side: int = 20000) -> bytes:
    """A 1-bit side x side all-black PNG: a few KB on the wire, 400 MP once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    raw = zlib.compress(row * side, 9)
    ihdr = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])  # bit depth 1, grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from faceforge.data.synthetic import SyntheticFaces
    from faceforge.deploy.commands import create_gallery
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("service")
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.ckpt", build_backbone("mobilefacenet_tiny"))
    create_gallery(root / "g", root / "tiny.ckpt")
    synth = SyntheticFaces(seed=3)
    faces = {j: [png_bytes(synth.render(j, k)[0]) for k in range(2)] for j in range(12)}
    return root, faces


@pytest.fixture(scope="module")
def server(setup):
    from faceforge.deploy.service import BackgroundServer, ServiceConfig, create_app

    root, _ = setup
    app = create_app(ServiceConfig(gallery=str(root / "g"), model=str(root / "tiny.ckpt"), api_key=KEY,
                                   threshold=0.5, max_body_bytes=LIMIT, max_pixels=20_000_000))
    with BackgroundServer(app) as url:
        yield url


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, timeout=60, headers={"X-API-Key": KEY}) as c:
        yield c


def assert_error(r, status: int | tuple[int, ...], code: str | None = None):
    assert r.status_code in (status if isinstance(status, tuple) else (status,)), r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code:
        assert body["error"]["code"] == code


def test_refuses_to_start_without_a_key(setup):
    from faceforge.deploy.service import ServiceConfig, create_app
    from faceforge.errors import UserError

    root, _ = setup
    with pytest.raises(UserError, match="API key is required"):
        create_app(ServiceConfig(gallery=str(root / "g"), model=str(root / "tiny.ckpt")))


def test_auth(server, setup):
    _, faces = setup
    files = {"image": ("a.png", faces[0][0])}
    with httpx.Client(base_url=server, timeout=60) as c:
        assert_error(c.post("/v1/embed", files=files), 401, "unauthorized")
        assert_error(c.post("/v1/embed", files=files, headers={"X-API-Key": KEY + "x"}), 401)
        assert_error(c.post("/v1/embed", files=files, headers={"Authorization": "Bearer nope"}), 401)
        assert_error(c.delete("/v1/gallery/anyone"), 401)
        assert c.post("/v1/embed", files=files, data={"aligned": "true"},
                      headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert c.get("/healthz").status_code == 200
        assert "/v1/identify" in c.get("/openapi.json").json()["paths"]
        assert c.get("/docs").status_code == 200


def test_endpoints_multipart_and_json(client, setup):
    _, faces = setup
    a, b = faces[1]
    r = client.post("/v1/embed", files={"image": ("a.png", a)}, data={"aligned": "true"})
    assert r.status_code == 200
    emb = np.array(r.json()["faces"][0]["embedding"])
    assert emb.shape == (64,) and abs(np.linalg.norm(emb) - 1) < 1e-3
    r = client.post("/v1/verify", json={"a": base64.b64encode(a).decode(), "b": base64.b64encode(b).decode(),
                                        "aligned": True})
    assert r.status_code == 200 and set(r.json()) >= {"similarity", "threshold", "same"}
    assert r.json()["threshold"] == 0.5
    r = client.post("/v1/gallery/enroll",
                    json={"identity": "person-1", "images": [base64.b64encode(a).decode()], "aligned": True})
    assert r.status_code == 200 and r.json()["enrolled"] == 1
    r = client.post("/v1/identify", files={"image": ("b.png", a)}, data={"aligned": "1", "top_k": "3"})
    assert r.status_code == 200
    assert r.json()["faces"][0]["matches"][0]["identity"] == "person-1"
    assert r.json()["faces"][0]["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert client.delete("/v1/gallery/person-1").json()["removed"] == 1
    assert_error(client.delete("/v1/gallery/person-1"), 404, "not_found")


def test_malformed_bodies(client, setup):
    _, faces = setup
    as_json = {"content-type": "application/json"}
    assert_error(client.post("/v1/embed", content=b"{nope", headers=as_json), 400)
    assert_error(client.post("/v1/embed", json=[1, 2]), 422)
    assert_error(client.post("/v1/embed", json={}), 422, "invalid_request")
    assert_error(client.post("/v1/embed", json={"image": "***not base64***"}), 422)
    assert_error(client.post("/v1/embed", content=b"raw", headers={"content-type": "text/plain"}), 415)
    assert_error(client.post("/v1/identify", json={"image": base64.b64encode(faces[0][0]).decode(),
                                                   "top_k": "many"}), 422)
    assert_error(client.post("/v1/identify", json={"image": base64.b64encode(faces[0][0]).decode(),
                                                   "group": "median"}), 422)
    img = base64.b64encode(faces[0][0]).decode()
    assert_error(client.post("/v1/gallery/enroll", json={"identity": "a\x00b", "image": img}), 422)
    assert_error(client.post("/v1/embed", content=b"--x\r\nbroken",
                             headers={"content-type": "multipart/form-data; boundary=x"}), (400, 422))
    assert_error(client.get("/v1/embed"), 405)
    assert_error(client.post("/v1/nothing"), 404)


def test_oversize_413(client):
    assert_error(client.post("/v1/embed", content=b"x" * (LIMIT + 1),
                             headers={"content-type": "application/json"}), 413, "too_large")

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(LIMIT // 65536 + 2):
            yield b"y" * 65536

    as_json = {"content-type": "application/json"}
    assert_error(client.post("/v1/embed", content=chunks(), headers=as_json), 413)


def test_hostile_images(client):
    bomb = bomb_png()
    assert len(bomb) < 100_000
    assert_error(client.post("/v1/embed", files={"image": ("bomb.png", bomb)}), 422, "image_too_large")
    fake_gif, fake_jpeg = b"GIF89a not really", b"\xff\xd8\xff\xe0" + b"\x00" * 64
    assert_error(client.post("/v1/embed", files={"image": ("x.jpg", fake_gif)}), 415, "not_an_image")
    assert_error(client.post("/v1/embed", files={"image": ("x.jpg", fake_jpeg)}), 415)
    assert_error(client.post("/v1/embed", files={"image": ("x.txt", b"hello world")}), 415)
    blank = png_bytes(np.full((200, 200, 3), 128, np.uint8))
    assert_error(client.post("/v1/embed", files={"image": ("blank.png", blank)}), 422, "no_face")


def test_real_photo_through_the_detector(client):
    photo = SHARED / "data" / "photos" / "obama.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not present (../shared is expected beside the checkout)")
    r = client.post("/v1/embed", files={"image": ("obama.jpg", photo.read_bytes())})
    assert r.status_code == 200
    faces = r.json()["faces"]
    assert len(faces) == 1 and faces[0]["score"] > 0.5 and len(faces[0]["landmarks"]) == 5
    x1, y1, x2, y2 = faces[0]["box"]
    assert x2 - x1 > 50 and y2 - y1 > 50


def run_load(url: str, payloads: list[bytes], n: int, workers: int = 8) -> dict:
    """``n`` identify requests from ``workers`` threads; latencies and errors."""
    lat, errors = [], []
    local = threading.local()

    def one(i: int):
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY})
        t = time.perf_counter()
        r = c.post("/v1/identify", files={"image": ("p.png", payloads[i % len(payloads)])},
                   data={"aligned": "true", "top_k": "3"})
        lat.append(time.perf_counter() - t)
        if r.status_code != 200:
            errors.append(r.status_code)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    ms = np.array(lat) * 1000
    return {"requests": n, "errors": len(errors), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


def test_concurrent_enrol_and_search_consistent(server, setup):
    _, faces = setup

    def enrol_then_find(j: int):
        with httpx.Client(base_url=server, timeout=60, headers={"X-API-Key": KEY}) as c:
            r = c.post("/v1/gallery/enroll", files=[("image", faces[j][0])],
                       data={"identity": f"c{j}", "aligned": "true"})
            assert r.status_code == 200, r.text
            r = c.post("/v1/identify", files={"image": faces[j][0]}, data={"aligned": "true", "top_k": "1"})
            top = r.json()["faces"][0]["matches"][0]
            return top["identity"], top["score"]

    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(enrol_then_find, range(12)))
    assert [f[0] for f in found] == [f"c{j}" for j in range(12)]  # each write visible at once
    with httpx.Client(base_url=server, timeout=60, headers={"X-API-Key": KEY}) as c:
        info = c.get("/v1/gallery").json()
        assert "path" not in info
        names = {f"c{j}" for j in range(12)}
        with ThreadPoolExecutor(8) as pool:
            removed = list(pool.map(lambda n: c.delete(f"/v1/gallery/{n}").json()["removed"], sorted(names)))
        assert removed == [1] * 12
        assert c.get("/v1/gallery").json()["images"] == info["images"] - 12


def test_load_200_requests(server, setup):
    _, faces = setup
    res = run_load(server, [f[0] for f in faces.values()], 200)
    assert res["errors"] == 0


@pytest.mark.slow
def test_load_2000_requests(server, setup):
    _, faces = setup
    res = run_load(server, [f[0] for f in faces.values()], 2000)
    assert res["errors"] == 0


# ------------------------------------------------------------------ hardening (#13 section 6, #16 section 4)


def small_app(setup, **limits):
    from faceforge.deploy.service import ServiceConfig, create_app

    root, _ = setup
    return create_app(ServiceConfig(gallery=str(root / "g"), model=str(root / "tiny.ckpt"), api_key=KEY,
                                   threshold=0.5, **limits))


def _closed_by_server(sock, deadline: float) -> bytes:
    """Everything the server sent until it closed the connection (bounded by ``deadline``)."""

    got = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
    raise AssertionError("the server kept an idle connection open")


def test_idle_connections_cannot_starve_the_service(setup):
    """300 idle TCP connections (no key, no request) from one client address: they hold at most
    the per-client cap, are closed after the header timeout, and another client is served at once."""
    import socket

    from faceforge.deploy.service import BackgroundServer

    _, faces = setup
    app = small_app(setup, header_timeout=1.0, body_timeout=1.0, max_connections_per_client=8,
                    max_connections=64)
    idle = []
    with BackgroundServer(app) as url:
        port = int(url.rsplit(":", 1)[1])
        try:
            for _ in range(300):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                idle.append(s)
                try:
                    s.bind(("127.0.0.2", 0))  # another loopback address: another client
                except OSError:
                    pytest.skip("127.0.0.2 is not usable as a source address here")
                s.connect(("127.0.0.1", port))
            s = socket.create_connection(("127.0.0.1", port))  # a slowloris: a head that never ends
            idle.append(s)
            s.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\n")
            s = socket.create_connection(("127.0.0.1", port))  # a body that never comes
            idle.append(s)
            s.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode()
                      + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": KEY}) as c:
                r = c.post("/v1/embed", files={"image": ("a.png", faces[0][0])}, data={"aligned": "true"})
                assert r.status_code == 200, r.text
            deadline = time.monotonic() + 30
            replies = [_closed_by_server(s, deadline) for s in idle]
            refused = [r for r in replies if b"too_many_connections" in r]
            assert len(refused) >= 300 - 8  # beyond the cap: refused at once with a JSON 503
            assert all(r.startswith(b"HTTP/1.1 503") for r in refused)
            assert sum(r == b"" for r in replies) <= 8 + 2  # the rest timed out without a word
        finally:
            for s in idle:
                s.close()


def test_concurrent_large_uploads_decode_under_a_limit(setup):
    """Four concurrent 6000x6000 uploads: at most ``max_decodes`` are ever decoded at once."""
    from faceforge.deploy.service import BackgroundServer

    app = small_app(setup, max_decodes=2, max_pixels=40_000_000, max_body_bytes=20_000_000)
    service = app.service
    seen = []
    service.on_decode = seen.append
    big = png_bytes(np.full((6000, 6000, 3), 100, np.uint8))
    with BackgroundServer(app) as url:
        def upload(_):
            with httpx.Client(base_url=url, timeout=120, headers={"X-API-Key": KEY}) as c:
                return c.post("/v1/embed", files={"image": ("big.png", big)})

        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(upload, range(4)))
    for r in replies:
        assert_error(r, 422, "no_face")  # decoded and searched: a flat image has no face
    assert len(seen) == 4 and max(seen) <= 2 and service.peak_decoding <= 2
    assert service.decoding == 0


def test_identities_crops_and_faces_on_enrol(client, setup):
    _, faces = setup
    img = base64.b64encode(faces[5][0]).decode()
    for bad in ("a/b", "..", "a\\b", " x", "x" * 129, "a?b"):
        assert_error(client.post("/v1/gallery/enroll", json={"identity": bad, "image": img, "aligned": True}),
                     422, "invalid_request")
    name = "Ann Lee_2.x-y"
    r = client.post("/v1/gallery/enroll", json={"identity": name, "image": img, "aligned": True})
    assert r.status_code == 200 and r.json()["enrolled"] == 1
    again = client.post("/v1/gallery/enroll", json={"identity": name, "images": [img, img], "aligned": True})
    assert again.json()["enrolled"] == 0 and again.json()["already"] == 2  # same content: nothing twice
    assert client.delete(f"/v1/gallery/{name}").json()["removed"] == 1  # every enrollable id deletes
    for name in ("Jos\u00e9", "J.R. Smith-Jones", "a..", "_x", "x" * 128, "\u738b\u83f2"):
        r = client.post("/v1/gallery/enroll", json={"identity": name, "image": img, "aligned": True})
        assert r.status_code == 200, (name, r.text)
        assert client.delete(f"/v1/gallery/{name}").json() == {"identity": name, "removed": 1}
    # aligned=true takes only a plausible crop of the model's input size
    import cv2

    crop = faces[5][0]
    decoded = cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    for size, ok in (((112, 112), True), ((120, 104), True), ((200, 200), False), ((112, 40), False)):
        data = png_bytes(np.ascontiguousarray(cv2.resize(decoded, size[::-1])))
        r = client.post("/v1/embed", files={"image": ("c.png", data)}, data={"aligned": "true"})
        if ok:
            assert r.status_code == 200, (size, r.text)
        else:
            assert_error(r, 422, "not_a_crop")
    group = SHARED / "data" / "photos" / "t1.jpg"
    if not group.is_file():
        pytest.skip(f"{group} not present (../shared is expected beside the checkout)")
    photo = {"image": ("t1.jpg", group.read_bytes())}
    assert_error(client.post("/v1/gallery/enroll", files=photo, data={"identity": "group"}), 422,
                 "several_faces")
    r = client.post("/v1/gallery/enroll", files=photo, data={"identity": "group", "largest_face": "true"})
    assert r.status_code == 200 and r.json()["enrolled"] == 1
    assert client.delete("/v1/gallery/group").json()["removed"] == 1


def test_no_server_paths_and_no_keys_in_urls(client, setup):
    import logging

    from faceforge.deploy.connections import HideQueryString
    from faceforge.deploy.gallery import Gallery

    root, faces = setup
    r = client.post("/v1/embed", files={"image": ("a.png", faces[7][0])}, data={"aligned": "true"})
    emb = np.array(r.json()["faces"][0]["embedding"], np.float32)
    with Gallery(root / "g") as g:  # as if enrolled from files by the CLI: the source is a server path
        g.enroll("from-files", emb[None], ["/srv/private/people/x.png"], model=g.model_id)
    r = client.post("/v1/identify", files={"image": ("a.png", faces[7][0])}, data={"aligned": "true"})
    top = r.json()["faces"][0]["matches"][0]
    assert top["identity"] == "from-files" and "best_source" not in top and "/srv/private" not in r.text
    assert client.delete("/v1/gallery/from-files").json()["removed"] == 1
    # an API key in the query string is refused, even with a good header, and never logged
    for q in (f"api_key={KEY}", f"token={KEY}", f"KEY={KEY}"):
        assert_error(client.get(f"/v1/gallery?{q}"), 400, "credential_in_url")
    access = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, HideQueryString) for f in access.filters)
    rec = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                            ("127.0.0.1:1", "GET", f"/v1/gallery?api_key={KEY}", "1.1", 400), None)
    HideQueryString().filter(rec)
    assert KEY not in rec.getMessage() and "/v1/gallery?<hidden>" in rec.getMessage()


def test_serve_refusals_are_one_line(setup, monkeypatch, capsys):
    from faceforge.cli.main import main
    from faceforge.deploy.service import ServiceConfig, serve
    from faceforge.errors import UserError

    root, _ = setup
    insecure = ServiceConfig(gallery=str(root / "g"), model=str(root / "tiny.ckpt"), insecure_no_auth=True)
    with pytest.raises(UserError, match="loopback"):
        serve(insecure, host="0.0.0.0", port=8080)
    keyed = ServiceConfig(gallery=str(root / "g"), model=str(root / "tiny.ckpt"), api_key=KEY)
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        for host, port, msg in (("127.0.0.1", 70000, "1-65535"), ("127.0.0.1", 0, "1-65535"),
                                ("no-such-host.invalid", 8080, "cannot resolve"),
                                ("127.0.0.1", taken.getsockname()[1], "cannot listen")):
            with pytest.raises(UserError, match=msg):
                serve(keyed, host=host, port=port)
    finally:
        taken.close()
    monkeypatch.setenv("FACEFORGE_API_KEY", KEY)
    base = ["serve", "--gallery", str(root / "g"), "--model", str(root / "tiny.ckpt")]
    for extra in (["--port", "70000"], ["--host", "no-such-host.invalid", "--port", "8080"],
                  ["--max-decodes", "0"]):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_micro_batcher_stacks_waiting_requests():
    """While the model runs, arriving requests queue; the next pass embeds all of them at once and
    each gets its own rows back."""
    from faceforge.deploy.batching import MicroBatcher

    running, release, calls = threading.Event(), threading.Event(), []

    def embed(crops):
        calls.append(len(crops))
        if len(calls) == 1:
            running.set()
            assert release.wait(30)
        return crops.reshape(len(crops), -1)[:, :2].astype(np.float32)

    b = MicroBatcher(embed, window_s=0.0, max_batch=64)
    out = {}

    def ask(i, n=1):
        out[i] = b.embed(np.full((n, 4, 4, 3), i, np.uint8))

    first = threading.Thread(target=ask, args=(0,))
    first.start()
    assert running.wait(30)
    rest = [threading.Thread(target=ask, args=(i, 2)) for i in range(1, 6)]
    for t in rest:
        t.start()
    deadline = time.monotonic() + 30
    while b._queue.qsize() < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in [first, *rest]:
        t.join(30)
    assert calls == [1, 10] and b.batches == 2 and b.largest == 10
    assert all(out[i].shape == ((1 if i == 0 else 2), 2) and np.all(out[i] == i) for i in range(6))

    def broken(crops):
        raise ValueError("model failed")

    bad = MicroBatcher(broken)
    with pytest.raises(ValueError, match="model failed"):
        bad.embed(np.zeros((1, 4, 4, 3), np.uint8))
    b.close()
    bad.close()
