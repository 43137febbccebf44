"""The service's own documentation: ``/docs`` (Swagger UI) and ``/redoc`` served offline, and an
OpenAPI schema with typed request fields, response models and descriptions.

FastAPI's default pages load Swagger UI from a CDN: offline (an air-gapped server, a laptop on a
train) ``/docs`` is a blank page. Here the assets come from the installed ``fastapi-offline``
package (part of the ``serve`` extra), whose wheel carries swagger-ui's and ReDoc's files; nothing
is fetched from outside (Swagger UI's online validator badge is off too).

The endpoints read their inputs themselves (multipart or JSON, see
:mod:`faceforge.deploy.service_requests`), so FastAPI cannot infer their schema: :func:`body_doc`
writes it, a type per field; the response models here are documentation only (``responses=`` in the
schema, not ``response_model=``), so what an endpoint returns is never filtered by them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from faceforge.errors import UserError

# the asset paths /docs and /redoc load (public, like the pages: see service_requests.PUBLIC_PATHS)
ASSETS = {"/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
          "/docs/swagger-ui.css": ("swagger-ui.css", "text/css"),
          "/docs/favicon.png": ("favicon.png", "image/png"),
          "/docs/redoc.standalone.js": ("redoc.standalone.js", "text/javascript")}

# request fields by name: (JSON schema, description). A field not listed stays a documented string.
_BOOL = {"type": "boolean", "default": False}
FIELDS: dict[str, dict[str, Any]] = {
    "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
    "group": {"type": "string", "enum": ["max", "mean"], "default": "max"},
    "all_faces": _BOOL, "aligned": _BOOL, "largest_face": _BOOL,
    "identity": {"type": "string", "minLength": 1},
}


def static_dir() -> Path:
    """Where the installed ``fastapi-offline`` keeps swagger-ui's and ReDoc's files."""
    try:
        import fastapi_offline
    except ImportError:
        raise UserError("the service's offline /docs needs fastapi-offline: "
                        "pip install 'faceforge[serve]'") from None
    return Path(fastapi_offline.__file__).resolve().parent / "static"


def body_doc(fields: dict[str, str], images: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    """``openapi_extra`` of an endpoint: its multipart and JSON bodies, each field typed. Image
    fields are file uploads in multipart and base64 strings in JSON (``images``: a list of them)."""
    form, js = {}, {}
    for name, text in fields.items():
        if name in images:
            many = name.endswith("s")
            upload = {"type": "string", "format": "binary"}
            b64 = {"type": "string", "format": "byte", "description": "base64-encoded image file"}
            form[name] = {"type": "array", "items": upload} if many else upload
            js[name] = {"type": "array", "items": b64} if many else b64
        else:
            form[name] = js[name] = dict(FIELDS.get(name, {"type": "string"}))
        form[name] = {**form[name], "description": text}
        js[name] = {**js[name], "description": text}
    need = list(required or [n for n in fields if n in images and not n.endswith("s")])
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": form, "required": need}},
        "application/json": {"schema": {"type": "object", "properties": js, "required": need}}}}}


# ------------------------------------------------------------------------------ response models


class Face(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded image")
    score: float = Field(description="detector confidence")
    landmarks: list[list[float]] = Field(description="five (x, y) points: eyes, nose, mouth corners")


class EmbeddedFace(Face):
    embedding: list[float] = Field(description="L2-normalised embedding")


class EmbedResponse(BaseModel):
    model_id: str = Field(description="the model that made the embeddings")
    faces: list[EmbeddedFace]


class ThresholdInfo(BaseModel):
    threshold: float | None = Field(description="the same-person threshold in use (null: none; answers "
                                    "are then rankings only)")
    far: float | None = Field(None, description="the false-accept rate it was calibrated at")
    threshold_source: str | None = Field(None, description="where it came from: the model card, a "
                                         "checkpoint's calibration, or the server's --threshold")


class VerifyResponse(ThresholdInfo):
    similarity: float = Field(description="cosine similarity of the two faces")
    same: bool | None = Field(description="similarity >= threshold (null without a threshold)")
    hint: str | None = Field(None, description="without a threshold: how to calibrate one")
    a: Face
    b: Face


class Match(BaseModel):
    identity: str
    score: float = Field(description="cosine similarity, grouped per identity (max or mean)")
    best_score: float = Field(description="the identity's best single image")
    best_vector_id: int
    images: int = Field(description="the identity's images that took part in the score")


class IdentifiedFace(Face):
    answer: str = Field(description="the best identity when its score reaches the threshold, else "
                        "'unknown' (open set)")
    known: bool | None = Field(description="false: 'unknown' (best score below the threshold); null: "
                               "no threshold, the answer is the best-ranked identity")
    matches: list[Match] = Field(description="the top-k, best first, listed even when 'unknown'")


class IdentifyResponse(ThresholdInfo):
    faces: list[IdentifiedFace]


class EnrollResponse(BaseModel):
    identity: str
    vector_ids: list[int]
    enrolled: int = Field(description="images added")
    already: int = Field(description="images the identity already held (same content)")


class RemoveResponse(BaseModel):
    identity: str
    removed: int = Field(description="images removed")


class GalleryInfo(BaseModel):
    model_id: str | None = None
    dim: int | None = None
    images: int
    identities: int

    model_config = {"extra": "allow", "protected_namespaces": ()}


class Health(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: invalid_request, unauthorized, too_large, ...")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


RESPONSES: dict[tuple[str, str], tuple[type[BaseModel], str]] = {
    ("get", "/healthz"): (Health, "The service is up (no API key needed)."),
    ("post", "/v1/embed"): (EmbedResponse, "Detect faces and return their embeddings."),
    ("post", "/v1/verify"): (VerifyResponse, "Are the largest faces of two images the same person?"),
    ("post", "/v1/identify"): (IdentifyResponse, "Search the gallery for each face of an image."),
    ("post", "/v1/gallery/enroll"): (EnrollResponse, "Add images of one identity to the gallery."),
    ("delete", "/v1/gallery/{identity}"): (RemoveResponse, "Remove an identity and all its images."),
    ("get", "/v1/gallery"): (GalleryInfo, "How many identities and images the gallery holds."),
}

ERRORS = {"401": "missing or wrong API key", "413": "request body too large",
          "415": "not an image", "422": "invalid request (a field, an image without a face, ...)"}


def _documented(schema: dict) -> dict:
    """Add the response models, summaries and error shapes to FastAPI's schema."""
    from pydantic.json_schema import models_json_schema

    models = [m for m, _ in RESPONSES.values()] + [ErrorResponse]
    refs, defs = models_json_schema([(m, "serialization") for m in models],
                                    ref_template="#/components/schemas/{model}")
    schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
    ref = {m: refs[(m, "serialization")] for m in models}
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            model, summary = RESPONSES.get((method, path), (None, None))
            if model is None:
                continue
            op["summary"] = summary
            ok = {"description": "OK", "content": {"application/json": {"schema": ref[model]}}}
            op["responses"] = {"200": ok, **{code: {"description": text, "content": {
                "application/json": {"schema": ref[ErrorResponse]}}} for code, text in ERRORS.items()
                if path != "/healthz"}}
    return schema


def install_docs(app, title: str) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets from the installed package, and document the
    responses in ``/openapi.json``. ``app`` is created with ``docs_url=None, redoc_url=None``."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import FileResponse

    folder = static_dir()
    for url, (name, media) in ASSETS.items():
        if not (folder / name).is_file():
            raise UserError(f"fastapi-offline: {name} missing from {folder}; reinstall it")

        def asset(path=folder / name, media=media):
            return FileResponse(path, media_type=media, headers={"cache-control": "max-age=86400"})

        app.add_api_route(url, asset, methods=["GET"], include_in_schema=False)

    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} - docs",
                                   swagger_js_url="/docs/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/swagger-ui.css",
                                   swagger_favicon_url="/docs/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    def redoc():
        return get_redoc_html(openapi_url="/openapi.json", title=f"{title} - ReDoc",
                              redoc_js_url="/docs/redoc.standalone.js",
                              redoc_favicon_url="/docs/favicon.png", with_google_fonts=False)

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = _documented(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi
