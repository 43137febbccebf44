"""What a request to the face service brings, checked: the guard middleware (API key, credentials
in URLs, body size limit), uploads and fields from multipart or JSON, and image headers.

Every refusal is an :class:`ApiError` (status, code, message) that the app turns into
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json

import numpy as np

# query parameters that look like a credential: refused, a key must never travel in a URL
CREDENTIAL_PARAMS = frozenset({"api_key", "apikey", "api-key", "x-api-key", "key", "token", "access_token",
                               "auth", "authorization"})
PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc",
                          # the pages' assets, served from the installed package (service_docs.ASSETS)
                          "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/favicon.png",
                          "/docs/redoc.standalone.js"})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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
        if credential_in_query(scope.get("query_string", b"")):
            return await self.reply(send, 400, "credential_in_url", "send the API key in the X-API-Key "
                                    "or Authorization header, never in the URL")
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


def credential_in_query(query: bytes) -> bool:
    from urllib.parse import parse_qsl

    if not query:
        return False
    names = {k.strip().lower() for k, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)}
    return bool(names & CREDENTIAL_PARAMS)


def header_size(data: bytes, max_pixels: int, where: str = "image") -> tuple[int, int]:
    """(width, height) from an upload's header (nothing decoded); over ``max_pixels`` is a 422."""
    from PIL import Image, UnidentifiedImageError

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
    return w, h


def decode_upload(data: bytes, max_pixels: int, where: str = "image") -> np.ndarray:
    """RGB uint8 from uploaded bytes; the header's dimensions are checked before decoding."""
    from faceforge.io.images import CorruptImage, decode_image

    header_size(data, max_pixels, where)
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
