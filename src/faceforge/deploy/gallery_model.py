"""A gallery remembers its model: ``gallery enroll/search``, ``identify --gallery`` and
``serve --gallery`` load it without ``--model``.

``gallery create`` records, in the gallery's meta table (key/value, beside ``model_id``):
``model_path`` (the absolute path of the model file, or a spec such as ``dlib:resnet``),
``model_sha256`` (the content hash of the file, or of a spec's weights file), ``model_card`` (the
card in use, JSON) and ``model_card_file`` (the ``--card`` given at creation, if any).

Opening a gallery without ``--model`` loads the recorded model and refuses, in one line naming the
file, a model file that has moved (missing) or changed (another hash). A ``--model`` that is not the
gallery's (another model id) is refused in one line; the gallery's own model at a new place (same
content, so the same id) is accepted. Galleries made before the record need ``--model``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from faceforge.deploy.gallery_records import file_content_hash as _sha256
from faceforge.errors import UserError


def weights_file(analyzer) -> Path | None:
    """The file holding the analyzer's weights (a model file, or dlib's ``.dat``)."""
    inner = analyzer.embedder
    for name in ("source", "path", "model_path"):
        value = getattr(inner, name, None)
        if value and Path(value).is_file():
            return Path(value)
    return None


def model_record(analyzer, card=None) -> dict[str, str]:
    """What a new gallery records about its model (module docstring)."""
    spec = str(getattr(analyzer, "model", "") or "")
    is_file = bool(spec) and Path(spec).is_file()
    weights = weights_file(analyzer)
    return {
        "path": str(Path(spec).resolve()) if is_file else spec,
        "sha256": _sha256(weights) if weights is not None else "",
        "card": json.dumps(analyzer.card.to_dict()) if analyzer.card is not None else "",
        "card_file": str(Path(card).resolve()) if isinstance(card, (str, os.PathLike)) else "",
    }


def _recorded_model(gallery, where: str) -> tuple[str, str | None]:
    """(model path or spec, card file or None) recorded by a gallery, checked against the disk."""
    rec = gallery.model_record
    path = rec.get("path", "")
    if not path:
        raise UserError(f"{where}: this gallery does not record its model (made before faceforge kept it): "
                        "pass --model")
    if Path(path).is_absolute():
        if not Path(path).is_file():
            raise UserError(f"{where}: its model file {path} is missing (moved or deleted?): pass --model "
                            "with its new place")
        if rec.get("sha256") and _sha256(Path(path)) != rec["sha256"]:
            raise UserError(f"{where}: its model file {path} has changed since the gallery was made (another "
                            "content hash): restore that file, or create a new gallery for the new model")
    card = rec.get("card_file") or None
    if card and not Path(card).is_file():
        raise UserError(f"{where}: the card it was made with, {card}, is missing: pass --model and --card")
    return path, card


def gallery_analyzer(gallery_path, model=None, detector: str = "retinaface", device: str = "cpu",
                     threshold: float | None = None, card=None, multi: str = "largest_center"):
    """The analyzer of a gallery's model: ``model`` when given (refused unless it is the gallery's
    model), else the recorded one (:func:`_recorded_model`)."""
    from faceforge.deploy.commands import analyzer_model_id, load_analyzer
    from faceforge.deploy.gallery import Gallery
    from faceforge.deploy.gallery_store import redact

    where = redact(str(gallery_path))  # a postgresql:// URL's password never reaches a message
    with Gallery(gallery_path) as g:
        gallery_id, rec = g.model_id, dict(g.model_record)
        if model is None:
            model, recorded_card = _recorded_model(g, where)
            card = card if card is not None else recorded_card
    given = not (isinstance(model, str) and model == rec.get("path"))
    analyzer = load_analyzer(model, detector, device, threshold, card=card, multi=multi)
    weights = weights_file(analyzer)
    if not given and not Path(str(model)).is_absolute() and weights is not None and rec.get("sha256") \
            and _sha256(weights) != rec["sha256"]:  # a spec (dlib:resnet) whose installed weights changed
        raise UserError(f"{where}: {model}'s weights file {weights} has changed since the gallery was made "
                        "(another content hash): reinstall the version it was made with, or create a new "
                        "gallery")
    if analyzer_model_id(analyzer) != gallery_id:
        made = rec.get("path") or f"model id {gallery_id}"
        shown = getattr(analyzer, "model", model)
        if rec.get("path") and str(shown) == rec["path"] or (weights is not None and rec.get("sha256") ==
                                                           _sha256(weights)):
            raise UserError(f"{where}: made with {made}, whose card or flip now differs (model id "
                            f"{analyzer_model_id(analyzer)} vs {gallery_id}): use the card it was made with")
        raise UserError(f"--model {shown}: not this gallery's model ({where} was made with {made}); "
                        "models cannot be mixed: omit --model to use it, or create another gallery")
    return analyzer
