"""The authenticated HTTP face service (FastAPI + uvicorn; extra ``faceforge[serve]``).

Endpoints (JSON out; images in as multipart uploads or base64 strings in a JSON body)::

    POST   /v1/embed            image [, all_faces, aligned]          -> faces with embeddings
    POST   /v1/verify           a, b [, aligned]                      -> similarity, threshold, same
    POST   /v1/identify         image [, top_k, group, all_faces, aligned] -> faces (answer: an
                                identity or "unknown" below the threshold; top-k matches), threshold
    POST   /v1/gallery/enroll   identity, image (repeatable) / images [, aligned, largest_face] -> vector ids
    DELETE /v1/gallery/{identity}                                     -> images removed
    GET    /v1/gallery                                                -> gallery info
    GET    /healthz, /docs, /openapi.json                             (no key needed)

Security. Every other path needs the API key (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``,
compared with :func:`hmac.compare_digest`); the key is checked before the body is read. A key (or
any credential-like parameter) in the query string is refused (400) and the access log never shows
query strings. Bodies are
limited while they are read (``Content-Length`` over the limit is refused at once, a chunked body as
soon as it passes it): 413. An image's dimensions are read from its header before it is decoded and
images over ``max_pixels`` are refused (decompression bombs); what is not an image is a 415. No value
from a request names a file: identities follow a documented character set
(:data:`~faceforge.deploy.gallery_records.IDENTITY_RULE`, no ``/``), so every id that can be
enrolled can be deleted by ``DELETE /v1/gallery/{identity}``. ``aligned=true`` accepts only an image
whose size is the model's input size (or the 112x112 ArcFace crop) within ``aligned_tolerance``,
judged from the header before decoding. Enrolment refuses a photo with several faces unless
``largest_face=true``; re-enrolling an image the identity holds adds nothing (content hash).
Responses never contain server paths (no ``best_source``, no gallery path in messages). Every
error has one shape: ``{"error": {"code": "...", "message": "..."}}``.

Connections (:mod:`faceforge.deploy.connections`). A connection must deliver its request head
within ``header_timeout`` s and its body within ``body_timeout`` s, is closed after
``keep_alive`` s idle, and a client address holds at most ``max_connections_per_client``
connections: idle sockets cannot starve the service. ``--insecure-no-auth`` serves loopback only.

Concurrency and memory. Requests are served by uvicorn's event loop; the work runs in worker
threads. An upload is decoded, detected and aligned inside one of ``max_decodes`` image slots (a
semaphore), so N concurrent 6000x6000 uploads hold at most ``max_decodes`` decoded images; the
aligned crops then go to one embedding thread that stacks the crops of concurrent requests into
one batch (:mod:`faceforge.deploy.batching`, a ``batch_window_ms`` window). The gallery serialises
its writes itself and searches see every committed enrolment.

Replicas. ``--gallery postgresql://...`` lets several service processes (on one machine or many)
share one gallery: an enrolment acknowledged by one is found by every search any of them starts
afterwards, and a removal acknowledged by one is never answered again by any
(:mod:`faceforge.deploy.gallery`, "Replicas"). While the database cannot be reached, requests that
need it fail with 503 ``database_unavailable`` (``Retry-After: 1``) and the service reconnects by
itself; a retried enrolment adds nothing twice.
"""



import contextlib
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.deploy.service_requests import ApiError, Guard, header_size, read_inputs
from faceforge.errors import UserError

log = logging.getLogger("faceforge.serve")

STATUS_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
                500: "internal_error", 503: "database_unavailable"}


@dataclass
class ServiceConfig:
    gallery: str
    model: str
    api_key: str | None = None  # None only with insecure_no_auth
    insecure_no_auth: bool = False
    max_body_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    detector: str = "retinaface"
    device: str = "cpu"
    threshold: float | None = None
    max_images: int = 32  # images in one enrolment request
    max_decodes: int = 2  # uploads decoded/detected at once: peak memory ~ this x max_pixels x 6 bytes
    aligned_tolerance: float = 0.25  # aligned=true: each side within 25% of the model's input size
    batch_window_ms: float = 3.0  # the embedding stage waits this long for concurrent requests
    max_batch: int = 32  # crops in one embedding batch
    header_timeout: float = 10.0  # s to deliver a request head
    body_timeout: float = 60.0  # s to deliver a request body
    keep_alive: float = 5.0  # s idle between requests
    max_connections_per_client: int = 32
    max_connections: int = 512

    def __post_init__(self):
        for name in ("max_decodes", "max_batch", "max_connections_per_client", "max_connections",
                     "max_images"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"serve: {name} must be at least 1")
        for name in ("header_timeout", "body_timeout", "keep_alive"):
            if not 0 < float(getattr(self, name)) < 1e6:
                raise UserError(f"serve: {name} must be a positive number of seconds")
        if not 0 <= float(self.batch_window_ms) <= 1000 or not 0 < float(self.aligned_tolerance) < 1:
            raise UserError("serve: batch_window_ms must be in [0, 1000] and aligned_tolerance in (0, 1)")


def public_source(info: dict) -> dict:
    """A threshold's source without its detail, which may name a server path (a card's file)."""
    return {**info, "threshold_source": (info.get("threshold_source") or "").split(" (")[0] or None}


def _fastapi():
    try:
        import fastapi
        import python_multipart  # noqa: F401 - multipart uploads need it
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UserError(f"the HTTP service needs {e.name}: pip install 'faceforge[serve]'") from None
    return fastapi


# ------------------------------------------------------------------------------------- the app


class FaceService:
    """What the endpoints call: one analyzer, ``max_decodes`` image slots, one embedding batcher
    (:class:`~faceforge.deploy.batching.MicroBatcher`), one gallery."""

    def __init__(self, config: ServiceConfig, analyzer=None):
        from faceforge.deploy.batching import MicroBatcher
        from faceforge.deploy.commands import analyzer_model_id, load_analyzer
        from faceforge.deploy.gallery import Gallery

        self.config = config
        self.analyzer = analyzer or load_analyzer(config.model, config.detector, config.device,
                                                  config.threshold)
        if config.threshold is not None and self.analyzer.threshold != float(config.threshold):
            self.analyzer.threshold, self.analyzer.threshold_far = float(config.threshold), None
            self.analyzer.threshold_source = "given (--threshold)"
        self.model_id = analyzer_model_id(self.analyzer)
        # follow: replay other replicas' writes as they commit (a gallery shared through PostgreSQL)
        self.gallery = Gallery(config.gallery, follow=True)
        if self.gallery.model_id != self.model_id:
            self.gallery.close()
            raise UserError(f"--gallery {self.gallery.location}: made with model {self.gallery.model_id}, "
                            f"but --model is {self.model_id}")
        self._slots = threading.BoundedSemaphore(int(config.max_decodes))
        # the slots' work runs on max_decodes threads of its own: the allocator keeps freed buffers per
        # thread (glibc arenas), so big images touched by every request thread would grow the resident
        # set with the number of threads, not with the number of slots
        self._image_threads = ThreadPoolExecutor(int(config.max_decodes),
                                                 thread_name_prefix="faceforge-image")
        self._count = threading.Lock()
        self.decoding = 0  # uploads in an image slot now (never more than max_decodes)
        self.peak_decoding = 0
        self.preparing = 0  # requests before the embedding stage (the batcher waits for them)
        self.on_decode = None  # a hook (tests): called with the number of uploads in a slot
        self.batcher = MicroBatcher(self.analyzer.embed_crops, config.batch_window_ms / 1000,
                                    config.max_batch, upstream=lambda: self.preparing)
        secrets = {str(config.gallery), str(Path(config.gallery).resolve()), str(config.model)}
        self._hidden = sorted((p for p in secrets if len(p) > 1), key=len, reverse=True)

    def public(self, message: str) -> str:
        """A message with the server's paths replaced (what a client may see)."""
        for p in self._hidden:
            message = message.replace(p, "<server path>")
        return message

    def _check_crop(self, w: int, h: int, where: str) -> None:
        mh, mw = (int(v) for v in self.analyzer.card.input_size)
        tol = self.config.aligned_tolerance
        if not any(abs(h / sh - 1) <= tol and abs(w / sw - 1) <= tol for sh, sw in {(mh, mw), (112, 112)}):
            raise ApiError(422, "not_a_crop", f"{where}: {w}x{h} is not an aligned crop for this model "
                           f"(expected about {mw}x{mh}); send aligned=false to detect the face")

    @contextlib.contextmanager
    def _slot(self):
        with self._slots:
            with self._count:
                self.decoding += 1
                self.peak_decoding = max(self.peak_decoding, self.decoding)
                active = self.decoding
            try:
                if self.on_decode is not None:
                    self.on_decode(active)
                yield
            finally:
                with self._count:
                    self.decoding -= 1

    def crops(self, data: bytes, where: str, aligned: bool, all_faces: bool = False, single: bool = False):
        """(faces, aligned crops [F, H, W, 3]) of one upload: decoded, detected and aligned in an image
        slot; the decoded image is gone when this returns. ``single``: several faces are a 422."""
        w, h = header_size(data, self.config.max_pixels, where)
        if aligned:
            self._check_crop(w, h, where)
        job = self._image_threads.submit(self._decode_detect, data, where, aligned, all_faces, single)
        return job.result()

    def _decode_detect(self, data: bytes, where: str, aligned: bool, all_faces: bool, single: bool):
        from faceforge.deploy.commands import aligned_crop
        from faceforge.io.images import CorruptImage, decode_image

        with self._slot():
            try:
                img = decode_image(data, where)
            except CorruptImage:
                raise ApiError(415, "not_an_image", f"{where}: cannot be decoded") from None
            if aligned:
                crop, face = aligned_crop(self.analyzer, img)
                return [face], crop[None]
            faces = self.analyzer.detect(img)
            if not faces:
                raise ApiError(422, "no_face", f"{where}: no face found")
            if single and len(faces) > 1:
                raise ApiError(422, "several_faces", f"{where}: {len(faces)} faces found; send a photo of "
                               "one person, or set largest_face=true to enrol the largest")
            if not all_faces or single:
                faces = [max(faces, key=lambda f: f.width * f.height)]
            return faces, np.stack([self.analyzer.align(img, f) for f in faces])

    def faces(self, uploads: list[tuple[bytes, str]], aligned: bool, all_faces: bool = False,
              single: bool = False) -> list[list]:
        """Each upload's faces with ``.embedding``; all their crops go to the batcher together."""
        with self._count:
            self.preparing += 1
        left = False

        def leave():
            nonlocal left
            if not left:
                left = True
                with self._count:
                    self.preparing -= 1

        try:
            prepared = [self.crops(d, where, aligned, all_faces, single) for d, where in uploads]
            embs = self.batcher.embed(np.concatenate([c for _, c in prepared]), queued=leave)
        finally:
            leave()
        k = 0
        for faces, _ in prepared:
            for f in faces:
                f.embedding, k = embs[k], k + 1
        return [faces for faces, _ in prepared]

    def close(self) -> None:
        self.batcher.close()
        self._image_threads.shutdown(wait=True)
        self.gallery.close()


def create_app(config: ServiceConfig, analyzer=None):
    """The ASGI app (FastAPI wrapped in :class:`Guard`)."""
    fastapi = _fastapi()
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.security import APIKeyHeader
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from faceforge.deploy.commands import _face_record, identify_faces, open_set_info, verify_faces
    from faceforge.deploy.gallery_records import IDENTITY_RULE
    from faceforge.deploy.gallery_store import GalleryUnavailable
    from faceforge.deploy.service_docs import body_doc, install_docs

    if not config.insecure_no_auth and not config.api_key:
        raise UserError("serve: an API key is required (set it in the --api-key-env variable), "
                        "or pass --insecure-no-auth explicitly")
    service = FaceService(config, analyzer)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.close()

    app = fastapi.FastAPI(
        lifespan=lifespan, title="faceforge face service", version="1", docs_url=None, redoc_url=None,
        description="Face embedding, verification, identification and gallery enrolment. "
        "Authenticate with `X-API-Key` or `Authorization: Bearer`.")
    install_docs(app, app.title)  # /docs and /redoc from the installed package: no CDN
    app.state.service = service
    key_doc = fastapi.Security(APIKeyHeader(name="X-API-Key", auto_error=False))  # enforced by Guard

    def err(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return err(exc.status, exc.code, exc.message)

    @app.exception_handler(UserError)
    async def _user_error(request, exc: UserError):
        return err(422, "invalid_request", service.public(str(exc)))

    @app.exception_handler(GalleryUnavailable)
    async def _unavailable(request, exc: GalleryUnavailable):  # the gallery's database is away: retry
        response = err(503, "database_unavailable", "the gallery database is unavailable; retry shortly")
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return err(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        return err(exc.status_code, STATUS_CODES.get(exc.status_code, "error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):
        log.exception("unhandled error")
        return err(500, "internal_error", "internal error")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/v1/embed", openapi_extra=body_doc(
        {"image": "the image (upload, or base64 in JSON)", "all_faces": "every face (default: the largest)",
         "aligned": "the image is an aligned crop"}, ("image",)))
    async def embed(request: Request, _=key_doc):
        inp = await read_inputs(request, ("image",))
        data, aligned, all_faces = inp.image("image"), inp.flag("aligned"), inp.flag("all_faces")

        def work():
            faces = service.faces([(data, "image")], aligned, all_faces)[0]
            return [_face_record(f, embedding=[round(float(v), 6) for v in f.embedding]) for f in faces]

        return {"model_id": service.model_id, "faces": await run_in_threadpool(work)}

    @app.post("/v1/verify", openapi_extra=body_doc(
        {"a": "first image", "b": "second image", "aligned": "images are aligned crops"}, ("a", "b")))
    async def verify(request: Request, _=key_doc):
        inp = await read_inputs(request, ("a", "b"))
        da, db, aligned = inp.image("a"), inp.image("b"), inp.flag("aligned")

        def work():
            fa, fb = (f[0] for f in service.faces([(da, "a"), (db, "b")], aligned))
            return public_source(verify_faces(service.analyzer, fa, fb))

        return await run_in_threadpool(work)

    @app.post("/v1/identify", openapi_extra=body_doc(
        {"image": "probe image", "top_k": "identities per face (default 5)", "group": "max or mean",
         "all_faces": "every face (default: the largest)", "aligned": "the image is an aligned crop"},
        ("image",)))
    async def identify(request: Request, _=key_doc):
        inp = await read_inputs(request, ("image",))
        data, aligned, all_faces = inp.image("image"), inp.flag("aligned"), inp.flag("all_faces")
        k = inp.integer("top_k", 5, 1, 100)
        group = inp.text("group", ("max", "mean"), "max")

        def work():
            faces = service.faces([(data, "image")], aligned, all_faces)[0]
            found = identify_faces(service.gallery, service.analyzer, faces, k, group)
            for face in found:
                for m in face["matches"]:
                    m.pop("best_source", None)  # a server path when the gallery was enrolled from files
            return found

        # open set: each face's "answer" is "unknown" below this threshold (its FAR and source said)
        return {"faces": await run_in_threadpool(work), **public_source(open_set_info(service.analyzer))}

    @app.post("/v1/gallery/enroll", openapi_extra=body_doc(
        {"identity": f"identity id: {IDENTITY_RULE}", "image": "one image (repeatable in multipart)",
         "images": "several images (JSON list of base64 strings)", "aligned": "images are aligned crops",
         "largest_face": "enrol the largest face of a photo with several (default: refuse it)"},
        ("image", "images")))
    async def enroll(request: Request, _=key_doc):
        from faceforge.deploy.gallery import check_identity
        from faceforge.deploy.gallery_records import content_hash

        inp = await read_inputs(request, ("image", "images"))
        identity = check_identity(inp.text("identity"))
        blobs = inp.images.get("image", []) + inp.images.get("images", [])
        if not blobs:
            raise ApiError(422, "invalid_request", "'image': at least one image is required")
        if len(blobs) > service.config.max_images:
            raise ApiError(422, "invalid_request", f"at most {service.config.max_images} images per request")
        aligned, largest = inp.flag("aligned"), inp.flag("largest_face")

        def work():
            hashes = [content_hash(b) for b in blobs]
            held = service.gallery.enrolled_contents(identity, hashes)
            todo = {}  # content -> (bytes, where): new images, each once
            for i, (data, c) in enumerate(zip(blobs, hashes)):
                if c not in held and c not in todo:
                    todo[c] = (data, f"image {i}")
            ids = []
            if todo:
                faces = service.faces(list(todo.values()), aligned, single=not largest)
                ids = service.gallery.enroll(identity, np.stack([f[0].embedding for f in faces]),
                                             [f"api:sha256:{c[:16]}" for c in todo], model=service.model_id,
                                             contents=list(todo))
            return {"identity": identity, "vector_ids": ids, "enrolled": len(ids),
                    "already": len(blobs) - len(ids)}

        return await run_in_threadpool(work)

    @app.delete("/v1/gallery/{identity:path}")
    async def remove(identity: str, _=key_doc):
        from faceforge.deploy.gallery_records import check_stored_identity

        identity = check_stored_identity(identity)  # ids of older galleries too (a '/' included)
        n = await run_in_threadpool(service.gallery.remove, identity)
        if n == 0:
            raise ApiError(404, "not_found", "no such identity")
        return {"identity": identity, "removed": n}

    @app.get("/v1/gallery")
    async def gallery_info(_=key_doc):
        info = await run_in_threadpool(service.gallery.info)
        info.pop("path", None)  # the server's file layout is not the client's business
        return info

    guard = Guard(app, config.api_key if not config.insecure_no_auth else None, config.max_body_bytes)
    guard.service = service
    return guard


# ------------------------------------------------------------------------------------- running


def _server(app, log_level: str):
    from faceforge.deploy.connections import make_server

    c = app.service.config
    return make_server(app, header_timeout=c.header_timeout, body_timeout=c.body_timeout,
                       keep_alive=c.keep_alive, per_client=c.max_connections_per_client,
                       max_connections=c.max_connections, log_level=log_level)


def listen_socket(host: str, port) -> socket.socket:
    """The bound socket for ``--host``/``--port``; every way it can fail is a one-line UserError."""
    from faceforge.deploy.connections import bind

    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UserError(f"--port {port}: expected a port number in 1-65535")
    try:
        return bind(host, port)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    except (OSError, OverflowError, UnicodeError) as e:
        raise UserError(f"--host {host} --port {port}: cannot listen there "
                        f"({getattr(e, 'strerror', None) or e})") from None


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    from faceforge.deploy.connections import is_loopback

    if config.insecure_no_auth and not is_loopback(host):
        raise UserError(f"--host {host}: --insecure-no-auth serves only a loopback address (127.0.0.1, "
                        "::1, localhost); set an API key to serve other hosts")
    sock = listen_socket(host, port)
    try:
        server = _server(create_app(config), "info")
        shown = f"[{host}]" if ":" in host else host
        logging.getLogger("uvicorn.error").info("faceforge serving on http://%s:%d", shown, port)
        server.run(sockets=[sock])
    finally:
        sock.close()


class BackgroundServer:
    """The service on a free loopback port in a thread: ``with BackgroundServer(app) as url: ...``
    (``app`` from :func:`create_app`; its config's connection limits apply)."""

    def __init__(self, app, host: str = "127.0.0.1"):
        from faceforge.deploy.connections import bind

        self.sock = bind(host, 0)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = _server(app, "warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        import time

        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self.url
            time.sleep(0.01)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def api_key_from_env(name: str) -> str | None:
    import os

    key = os.environ.get(name, "")
    return key or None


def check_gallery_path(path: str) -> str:
    """A gallery folder, or a ``postgresql://`` URL (checked when the service opens it)."""
    from faceforge.deploy.gallery_store import is_database_url

    if is_database_url(path):
        return path
    if not (Path(path) / "gallery.sqlite").is_file():
        raise UserError(f"--gallery {path}: not a gallery (create it with 'faceforge gallery create')")
    return path
