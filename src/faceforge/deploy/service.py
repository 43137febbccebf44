"""The authenticated HTTP face service (FastAPI + uvicorn; extra ``faceforge[serve]``).

Endpoints (JSON out; images in as multipart uploads or base64 strings in a JSON body)::

    POST   /v1/embed            image [, all_faces, aligned]          -> faces with embeddings
    POST   /v1/verify           a, b [, aligned]                      -> similarity, threshold, same
    POST   /v1/identify         image [, top_k, group, all_faces, aligned] -> faces with matches
    POST   /v1/gallery/enroll   identity, image (repeatable) / images -> vector ids
    DELETE /v1/gallery/{identity}                                     -> images removed
    GET    /v1/gallery                                                -> gallery info
    GET    /healthz, /docs, /openapi.json                             (no key needed)

Security. Every other path needs the API key (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``,
compared with :func:`hmac.compare_digest`); the key is checked before the body is read. Bodies are
limited while they are read (``Content-Length`` over the limit is refused at once, a chunked body as
soon as it passes it): 413. An image's dimensions are read from its header before it is decoded and
images over ``max_pixels`` are refused (decompression bombs); what is not an image is a 415. No value
from a request names a file: identities are opaque strings stored in SQLite. Every error has one
shape: ``{"error": {"code": "...", "message": "..."}}``.

Concurrency. Requests are served by uvicorn's event loop; model inference runs in worker threads
behind one lock (one model, one inference at a time, so memory stays bounded); the gallery
serialises its writes itself and searches see every committed enrolment.
"""



import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import UserError

log = logging.getLogger("faceforge.serve")

PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
                500: "internal_error"}


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


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _fastapi():
    try:
        import fastapi
        import python_multipart  # noqa: F401 - multipart uploads need it
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UserError(f"the HTTP service needs {e.name}: pip install faceforge[serve]") from None
    return fastapi


# ------------------------------------------------------------------------------------- guards


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class Guard:
    """ASGI middleware: API-key check, then a body read with a hard size limit, then the app."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.max_body = int(max_body_bytes)

    @staticmethod
    async def reply(send, status: int, code: str, message: str, headers=()) -> None:
        body = error_body(code, message)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})

    def authorized(self, headers: dict[bytes, bytes]) -> bool:
        if self.key is None:
            return True
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        # compare_digest on equal-length digests: no timing leak of the key or its length
        return given is not None and hmac.compare_digest(hashlib.sha256(given).digest(),
                                                         hashlib.sha256(self.key).digest())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if scope["path"] not in PUBLIC_PATHS and not self.authorized(headers):
            return await self.reply(send, 401, "unauthorized", "missing or wrong API key "
                                    "(send X-API-Key or Authorization: Bearer)",
                                    [(b"www-authenticate", b"Bearer")])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await self.reply(send, 400, "bad_request", "Content-Length is not a number")
            if declared > self.max_body:
                return await self.reply(send, 413, "too_large",
                                        f"request body of {declared} bytes is over the "
                                        f"{self.max_body}-byte limit")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await self.reply(send, 413, "too_large",
                                        f"request body is over the {self.max_body}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def decode_upload(data: bytes, max_pixels: int, where: str = "image") -> np.ndarray:
    """RGB uint8 from uploaded bytes; the header's dimensions are checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    from faceforge.io.images import CorruptImage, decode_image

    if not data:
        raise ApiError(422, "invalid_request", f"{where}: empty")
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
    except Image.DecompressionBombError:
        raise ApiError(422, "image_too_large", f"{where}: over the {max_pixels}-pixel limit") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(415, "not_an_image", f"{where}: not a supported image") from None
    if w < 1 or h < 1 or w * h > max_pixels:
        raise ApiError(422, "image_too_large", f"{where}: {w}x{h} is over the {max_pixels}-pixel limit")
    try:
        return decode_image(data, where)
    except CorruptImage:
        raise ApiError(415, "not_an_image", f"{where}: cannot be decoded") from None


def _b64(value, where: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(422, "invalid_request", f"{where}: expected a base64 string")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]  # a data URL
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_request", f"{where}: not valid base64") from None


class Inputs:
    """A request's images (raw bytes by field) and plain fields, from multipart or JSON."""

    def __init__(self, images: dict[str, list[bytes]], fields: dict[str, object]):
        self.images, self.fields = images, fields

    def image(self, name: str) -> bytes:
        found = self.images.get(name)
        if not found:
            raise ApiError(422, "invalid_request", f"'{name}': an image is required")
        if len(found) > 1:
            raise ApiError(422, "invalid_request", f"'{name}': expected one image, got {len(found)}")
        return found[0]

    def flag(self, name: str) -> bool:
        v = self.fields.get(name, False)
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("1", "true", "yes", "0", "false", "no", ""):
            return v.lower() in ("1", "true", "yes")
        raise ApiError(422, "invalid_request", f"'{name}': expected true or false")

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self.fields.get(name, default)
        try:
            n = int(v) if not isinstance(v, bool) and not isinstance(v, float) else None
        except (TypeError, ValueError):
            n = None
        if n is None or not lo <= n <= hi:
            raise ApiError(422, "invalid_request", f"'{name}': expected an integer in [{lo}, {hi}]")
        return n

    def text(self, name: str, choices=None, default=None) -> str:
        v = self.fields.get(name, default)
        if not isinstance(v, str) or (choices and v not in choices):
            want = f"one of {', '.join(choices)}" if choices else "a string"
            raise ApiError(422, "invalid_request", f"'{name}': expected {want}")
        return v


async def read_inputs(request, image_fields: tuple[str, ...]) -> Inputs:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    images: dict[str, list[bytes]] = {}
    fields: dict[str, object] = {}
    if ctype == "multipart/form-data":
        from starlette.datastructures import UploadFile

        try:
            form = await request.form(max_files=64, max_fields=64)
        except Exception as e:  # a malformed multipart body
            raise ApiError(400, "bad_request", f"malformed multipart body: {type(e).__name__}") from None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                images.setdefault(key, []).append(await value.read())
            elif key in image_fields:
                images.setdefault(key, []).append(_b64(value, key))
            else:
                fields[key] = value
    elif ctype == "application/json":
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "bad_request", "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(422, "invalid_request", "body: expected a JSON object")
        for key, value in data.items():
            if key in image_fields:
                values = value if isinstance(value, list) else [value]
                images[key] = [_b64(v, key) for v in values]
            else:
                fields[key] = value
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data (file uploads) or application/json (base64 images)")
    return Inputs(images, fields)


# ------------------------------------------------------------------------------------- the app


class FaceService:
    """What the endpoints call: one analyzer behind a lock, one gallery."""

    def __init__(self, config: ServiceConfig, analyzer=None):
        from faceforge.deploy.commands import analyzer_model_id, load_analyzer
        from faceforge.deploy.gallery import Gallery

        self.config = config
        self.analyzer = analyzer or load_analyzer(config.model, config.detector, config.device,
                                                  config.threshold)
        if config.threshold is not None:
            self.analyzer.threshold = float(config.threshold)
        self.model_id = analyzer_model_id(self.analyzer)
        self.gallery = Gallery(config.gallery)
        if self.gallery.model_id != self.model_id:
            raise UserError(f"--gallery {config.gallery}: made with model {self.gallery.model_id}, "
                            f"but --model is {self.model_id}")
        self._infer = threading.Lock()

    def image(self, data: bytes, where: str) -> np.ndarray:
        return decode_upload(data, self.config.max_pixels, where)

    def faces(self, img: np.ndarray, aligned: bool, all_faces: bool = False, where: str = "image") -> list:
        from faceforge.deploy.commands import faces_in

        with self._infer:
            faces = faces_in(self.analyzer, img, aligned, all_faces)
        if not faces:
            raise ApiError(422, "no_face", f"{where}: no face found")
        return faces

    def close(self) -> None:
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

    from faceforge.deploy.commands import _face_record, identify_faces, verify_faces

    if not config.insecure_no_auth and not config.api_key:
        raise UserError("serve: an API key is required (set it in the --api-key-env variable), "
                        "or pass --insecure-no-auth explicitly")
    service = FaceService(config, analyzer)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.close()

    app = fastapi.FastAPI(
        lifespan=lifespan, title="faceforge face service", version="1",
        description="Face embedding, verification, identification and gallery enrolment. "
        "Authenticate with `X-API-Key` or `Authorization: Bearer`.")
    app.state.service = service
    key_doc = fastapi.Security(APIKeyHeader(name="X-API-Key", auto_error=False))  # enforced by Guard

    def err(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return err(exc.status, exc.code, exc.message)

    @app.exception_handler(UserError)
    async def _user_error(request, exc: UserError):
        return err(422, "invalid_request", str(exc))

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

    def body_doc(fields: dict[str, str], images: tuple[str, ...]) -> dict:
        props_json = {k: {"type": "string", "description": v} for k, v in fields.items()}
        props_form = {k: ({"type": "string", "format": "binary"} if k in images else {"type": "string"})
                      for k in fields}
        return {"requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": props_form}},
            "application/json": {"schema": {"type": "object", "properties": props_json}}}}}

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
            faces = service.faces(service.image(data, "image"), aligned, all_faces)
            return [_face_record(f, embedding=[round(float(v), 6) for v in f.embedding]) for f in faces]

        return {"model_id": service.model_id, "faces": await run_in_threadpool(work)}

    @app.post("/v1/verify", openapi_extra=body_doc(
        {"a": "first image", "b": "second image", "aligned": "images are aligned crops"}, ("a", "b")))
    async def verify(request: Request, _=key_doc):
        inp = await read_inputs(request, ("a", "b"))
        da, db, aligned = inp.image("a"), inp.image("b"), inp.flag("aligned")

        def work():
            fa = service.faces(service.image(da, "a"), aligned, where="a")[0]
            fb = service.faces(service.image(db, "b"), aligned, where="b")[0]
            return verify_faces(service.analyzer, fa, fb)

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
            faces = service.faces(service.image(data, "image"), aligned, all_faces)
            return identify_faces(service.gallery, service.analyzer, faces, k, group)

        return {"faces": await run_in_threadpool(work)}

    @app.post("/v1/gallery/enroll", openapi_extra=body_doc(
        {"identity": "identity id (opaque string)", "image": "one image (repeatable in multipart)",
         "images": "several images (JSON list of base64 strings)", "aligned": "images are aligned crops"},
        ("image", "images")))
    async def enroll(request: Request, _=key_doc):
        from faceforge.deploy.gallery import check_identity

        inp = await read_inputs(request, ("image", "images"))
        identity = check_identity(inp.text("identity"))
        blobs = inp.images.get("image", []) + inp.images.get("images", [])
        if not blobs:
            raise ApiError(422, "invalid_request", "'image': at least one image is required")
        if len(blobs) > service.config.max_images:
            raise ApiError(422, "invalid_request", f"at most {service.config.max_images} images per request")
        aligned = inp.flag("aligned")

        def work():
            rows, sources = [], []
            for i, data in enumerate(blobs):
                face = service.faces(service.image(data, f"image {i}"), aligned, where=f"image {i}")[0]
                rows.append(face.embedding)
                sources.append(f"api:sha1:{hashlib.sha1(data).hexdigest()[:16]}")
            ids = service.gallery.enroll(identity, np.stack(rows), sources, model=service.model_id)
            return {"identity": identity, "vector_ids": ids, "enrolled": len(ids)}

        return await run_in_threadpool(work)

    @app.delete("/v1/gallery/{identity}")
    async def remove(identity: str, _=key_doc):
        from faceforge.deploy.gallery import check_identity

        check_identity(identity)
        n = await run_in_threadpool(service.gallery.remove, identity)
        if n == 0:
            raise ApiError(404, "not_found", "no such identity")
        return {"identity": identity, "removed": n}

    @app.get("/v1/gallery")
    async def gallery_info(_=key_doc):
        info = await run_in_threadpool(service.gallery.info)
        info.pop("path", None)  # the server's file layout is not the client's business
        return info

    return Guard(app, config.api_key if not config.insecure_no_auth else None, config.max_body_bytes)


# ------------------------------------------------------------------------------------- running


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    import uvicorn

    app = create_app(config)
    if config.insecure_no_auth and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving WITHOUT authentication on %s", host)
    uvicorn.run(app, host=host, port=int(port), log_level="info", limit_concurrency=256, timeout_keep_alive=5)


class BackgroundServer:
    """uvicorn on a free loopback port in a thread: ``with BackgroundServer(app) as url: ...``."""

    def __init__(self, app, host: str = "127.0.0.1"):
        import socket

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
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
    if not (Path(path) / "gallery.sqlite").is_file():
        raise UserError(f"--gallery {path}: not a gallery (create it with 'faceforge gallery create')")
    return path
