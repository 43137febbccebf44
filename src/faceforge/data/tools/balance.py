"""``faceforge data balance SRC DST``: even out images per identity.

Default policy (all thresholds configurable), by an identity's image count n:

* n > 350: keep a random 350;  200 < n <= 350: keep all;
* 90 < n <= 200: keep all + a morphological-opening copy of each (x2);
* 30 < n <= 90: keep all + opening, Gaussian-noise and salt-and-pepper copies (x4);
* n <= 30: drop the identity.

Identities are processed in parallel; every random draw is seeded by (seed, identity name), so the
result does not depend on the worker count.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_write_bytes, atomic_write_text
from faceforge.data.tools import check_new_output
from faceforge.errors import UserError
from faceforge.io.folders import list_identity_folder
from faceforge.io.images import CorruptImage, decode_image, read_bytes


@dataclass
class BalancePolicy:
    cap: int = 350  # n > cap: keep a random ``cap``
    keep_above: int = 200  # keep_above < n <= cap: keep all
    double_above: int = 90  # double_above < n <= keep_above: x2 (opening)
    drop_at_most: int = 30  # drop_at_most < n <= double_above: x4 (opening, noise, salt-and-pepper)
    opening_kernel: int = 3
    noise_sigma: float = 8.0
    salt_pepper: float = 0.02
    quality: int = 95
    seed: int = 0

    def check(self) -> None:
        if not 0 <= self.drop_at_most <= self.double_above <= self.keep_above <= self.cap:
            raise UserError(
                "balance: thresholds must satisfy drop_at_most <= double_above <= keep_above <= cap"
            )
        if self.opening_kernel < 1 or self.noise_sigma < 0 or not 0 <= self.salt_pepper <= 1:
            raise UserError("balance: opening_kernel >= 1, noise_sigma >= 0, 0 <= salt_pepper <= 1")

    def action(self, n: int) -> str:
        if n > self.cap:
            return "sample"
        if n > self.keep_above:
            return "keep"
        if n > self.double_above:
            return "x2"
        if n > self.drop_at_most:
            return "x4"
        return "drop"


def opening(img: np.ndarray, kernel: int) -> np.ndarray:
    import cv2

    return cv2.morphologyEx(img, cv2.MORPH_OPEN, np.ones((kernel, kernel), np.uint8))


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0, 255).astype(np.uint8)


def salt_and_pepper(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    out = img.copy()
    hit = rng.random(img.shape[:2])
    out[hit < amount / 2] = 0
    out[hit > 1 - amount / 2] = 255
    return out


def _balance_identity(job: tuple[str, list[str], str, dict]) -> dict:
    import cv2

    name, files, out_dir, policy_d = job
    policy = BalancePolicy(**policy_d)
    n = len(files)
    action = policy.action(n)
    rng = np.random.default_rng([policy.seed, zlib.crc32(name.encode("utf-8"))])
    result = {"identity": name, "before": n, "after": 0, "action": action, "corrupt": 0}
    if action == "drop":
        return result
    if action == "sample":
        files = [files[i] for i in sorted(rng.choice(n, policy.cap, replace=False))]
    out = Path(out_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, policy.quality]
    for f in files:
        src = Path(f)
        try:  # decode-check what is copied: a text file or a 0-byte JPEG is not an image
            data = read_bytes(src)
            bgr = decode_image(data, str(src))[..., ::-1]
        except CorruptImage:
            result["corrupt"] += 1
            continue
        atomic_write_bytes(out / src.name, data)
        result["after"] += 1
        if action not in ("x2", "x4"):
            continue
        copies = {"open": opening(bgr, policy.opening_kernel)}
        if action == "x4":
            copies["noise"] = gaussian_noise(bgr, policy.noise_sigma, rng)
            copies["sp"] = salt_and_pepper(bgr, policy.salt_pepper, rng)
        for tag, img in copies.items():
            ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(img), params)
            atomic_write_bytes(out / f"{src.stem}_{tag}.jpg", enc.tobytes())
            result["after"] += 1
    return result


RULES = {  # action -> what the rule does (formatted with the policy), for the summary
    "sample": "n > {cap}: keep a random {cap}", "keep": "{keep_above} < n <= {cap}: keep all",
    "x2": "{double_above} < n <= {keep_above}: x2 (opening)",
    "x4": "{drop_at_most} < n <= {double_above}: x4 (opening, noise, salt-and-pepper)",
    "drop": "n <= {drop_at_most}: dropped",
}
# warn when the drop rule would remove more than this share of the images
MOST = 0.5


def check_drops(counts: list[int], policy: BalancePolicy, src: Path) -> str | None:
    """A UserError when the policy would drop every identity; a warning (returned) when it would
    drop most images, saying how to change the cut-off; None otherwise."""
    dropped = [n for n in counts if policy.action(n) == "drop"]
    total = sum(counts)
    hint = (f"the largest identity has {max(counts)} images; pass --drop-at-most N with N below the "
            "counts you want to keep (e.g. --drop-at-most 1 keeps every identity with 2 or more)")
    if len(dropped) == len(counts):
        raise UserError(f"balance: every identity of {src} has <= {policy.drop_at_most} images "
                        f"(--drop-at-most), so all {total} images would be dropped; {hint}")
    if sum(dropped) > MOST * total:
        return (f"warning: --drop-at-most {policy.drop_at_most} drops {len(dropped)} of {len(counts)} "
                f"identities, {sum(dropped)} of {total} images ({100 * sum(dropped) / total:.0f}%); {hint}")
    return None


def balance(src: str | Path, dst: str | Path, policy: BalancePolicy | None = None,
            workers: int | None = None, report: str | Path | None = None) -> dict:
    """Write the balanced copy of the identity folder ``src`` to ``dst``; returns the report.

    Nothing is written when the policy would drop every identity (a UserError); a policy dropping
    most images puts a ``warning`` in the report (see :func:`check_drops`)."""
    policy = policy or BalancePolicy()
    policy.check()
    src, dst = Path(src), Path(dst)
    files, labels, names = list_identity_folder(src, "balance")
    check_new_output(src, dst)
    warning = check_drops(np.bincount(labels, minlength=len(names)).tolist(), policy, src)
    dst.mkdir(parents=True, exist_ok=True)
    groups: dict[int, list[str]] = {}
    for f, lab in zip(files, labels):
        groups.setdefault(int(lab), []).append(str(f))
    jobs = [(names[lab], fs, str(dst), asdict(policy)) for lab, fs in groups.items()]
    workers = max(1, min(workers or mp.cpu_count(), len(jobs)))
    if workers == 1:
        rows = [_balance_identity(j) for j in jobs]
    else:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            rows = pool.map(_balance_identity, jobs, chunksize=max(1, len(jobs) // (4 * workers)))
    actions: dict[str, int] = {}
    per_rule: dict[str, dict[str, int]] = {}
    for r in rows:
        actions[r["action"]] = actions.get(r["action"], 0) + 1
        rule = per_rule.setdefault(r["action"], {"identities": 0, "before": 0, "after": 0})
        rule["identities"] += 1
        rule["before"] += r["before"]
        rule["after"] += r["after"]
    result = {
        "source": str(src), "output": str(dst), "policy": asdict(policy),
        "before": {"identities": len(rows), "images": sum(r["before"] for r in rows)},
        "after": {"identities": sum(r["action"] != "drop" for r in rows),
                  "images": sum(r["after"] for r in rows)},
        "actions": actions, "rules": per_rule, "warning": warning,
        "corrupt": sum(r["corrupt"] for r in rows), "identities": rows,
    }
    report_path = Path(report) if report else dst / "balance_report.json"
    atomic_write_text(report_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    result["report"] = str(report_path)
    return result


def summary(result: dict) -> str:
    """The totals, one line per rule that applied (identities, images before -> after), and the
    warning when most images were dropped."""
    b, a = result["before"], result["after"]
    lines = [f"balance: {b['images']} images / {b['identities']} identities -> {a['images']} images / "
             f"{a['identities']} identities, {result['corrupt']} unreadable skipped; "
             f"report: {result['report']}"]
    for action, rule in RULES.items():
        if action in result.get("rules", {}):
            r = result["rules"][action]
            lines.append(f"  {rule.format(**result['policy'])}: {r['identities']} identities, "
                         f"{r['before']} -> {r['after']} images")
    if result.get("warning"):
        lines.append(result["warning"])
    return "\n".join(lines)
