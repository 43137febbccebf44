"""Honest thresholds: which false-accept rates a set of impostor pairs can measure, and the
thresholds and TARs at several FARs at once.

The rule (one function, :func:`smallest_far`, used by ``eval verify``, reports, suites,
``export --pairs`` and ``calibrate``): a FAR is measurable when the set holds at least
``10 / FAR`` different-identity (impostor) pairs, i.e. at least ten false accepts are expected at
that rate. With fewer, the threshold is set by the one or two highest impostor scores that happen
to be in the set: 594 impostor pairs "measure" FAR 1e-3 with a threshold above every impostor seen,
and that threshold then rejects most genuine pairs too (a threshold of 0.98 calling every pair
"different"). Below the rule a TAR@FAR is printed as not measurable and a threshold is refused.

Ten expected errors keep the relative standard error of the measured FAR near 1/sqrt(10) ~ 0.32
(binomial), the usual "rule of 10" for rare-event rates; a stricter user can ask for more pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from faceforge.errors import UserError

MIN_FALSE_ACCEPTS = 10  # expected false accepts at the target FAR: impostor pairs >= 10 / FAR


def smallest_far(impostors: int) -> float:
    """The smallest FAR that ``impostors`` different-identity pairs measure (``10 / impostors``;
    ``inf`` with none): the one rule behind every TAR@FAR and threshold faceforge reports."""
    impostors = int(impostors)
    return MIN_FALSE_ACCEPTS / impostors if impostors > 0 else float("inf")


def measurable(far: float, impostors: int) -> bool:
    """Whether ``far`` is at or above :func:`smallest_far` of ``impostors`` (with a float margin)."""
    return float(far) >= smallest_far(impostors) * (1 - 1e-9)


def not_measurable_text(far: float, impostors: int) -> str:
    """Why a FAR is not measured, in words (printed in place of a TAR)."""
    return (f"not measurable: {int(impostors)} impostor pairs measure FAR >= {smallest_far(impostors):.2g} "
            f"(FAR {float(far):g} needs {int(np.ceil(MIN_FALSE_ACCEPTS / float(far)))})")


def tar_cell(entry: dict[str, Any], percent: bool = False) -> str:
    """A TAR of a ``tar_at_far`` entry as printed in tables and summary lines; ``n/m`` (not
    measurable) where the impostor pairs cannot resolve the FAR."""
    if not entry.get("measurable", True) or entry.get("tar") is None:
        return "n/m"
    return f"{100 * entry['tar']:.2f}" if percent else f"{entry['tar']:.4f}"


def tar_table(roc: dict[str, np.ndarray], fars: Iterable[float], impostors: int,
              sign: float = 1.0) -> dict[str, dict[str, Any]]:
    """``{"1e-03": {"tar", "threshold", "measurable", "smallest_far"}}`` for every FAR: TAR and
    threshold (times ``sign``: -1 turns a negated distance back into a distance) where measurable,
    None otherwise."""
    from faceforge.eval.verification import tar_at_far

    out = {}
    for far in fars:
        entry: dict[str, Any] = {"measurable": measurable(far, impostors),
                                 "smallest_far": smallest_far(impostors)}
        if entry["measurable"]:
            tar, thr = tar_at_far(roc, far)
            entry.update(tar=tar, threshold=sign * thr)
        else:
            entry.update(tar=None, threshold=None)
        out[f"{far:g}"] = entry
    return out


def thresholds_at_fars(scores: np.ndarray, issame: np.ndarray, fars: Iterable[float]) -> dict[str, Any]:
    """Cosine thresholds ("same" when ``score >= threshold``) at each FAR that the impostor pairs
    measure, with the TAR and the FAR measured at each; unmeasurable FARs are listed with
    ``threshold: None`` and the reason. Raises when there are no genuine or no impostor pairs."""
    from faceforge.eval.verification import roc_curve

    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    same, different = int(issame.sum()), int((~issame).sum())
    if same == 0 or different == 0:
        raise UserError(f"pairs: calibration needs both same and different pairs (got {same} same, "
                        f"{different} different)")
    fars = sorted({float(f) for f in fars}, reverse=True)
    for far in fars:
        if not 0 < far < 1:
            raise UserError(f"--far: expected a rate in (0, 1), got {far:g}")
    roc = roc_curve(scores, issame)
    impostor = scores[~issame]
    rows = []
    for far, entry in zip(fars, tar_table(roc, fars, different).values()):
        row = {"far": far, **entry}
        if entry["measurable"]:
            row["measured_far"] = float(np.mean(impostor >= entry["threshold"]))
            row["false_accepts"] = int(np.sum(impostor >= entry["threshold"]))
        else:
            row["reason"] = not_measurable_text(far, different)
        rows.append(row)
    return {"pairs": same + different, "same": same, "different": different,
            "smallest_far": smallest_far(different), "at_far": rows}
