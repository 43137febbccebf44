"""Every margin against a plain per-row float64 loop of the paper's formula (fp32 and fp64 inputs).

The loops use the ``math`` module only, one row and one column at a time; label −1 rows must come
out as the no-target form of each head.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from faceforge.models import build_margin
from faceforge.models.heads.sphereface_plus import mhe_energy

B, C = 12, 9


def make_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    cos = torch.rand(B, C, generator=g, dtype=torch.float64) * 2 - 1
    labels = torch.randint(0, C, (B,), generator=g)
    labels[[3, 8]] = -1
    cos[0, labels[0]] = 0.97  # easy row
    cos[1, labels[1]] = -0.96  # θ + m > π
    norms = torch.rand(B, generator=g, dtype=torch.float64) * 145 + 5
    return cos, labels, norms


def arc(c, m, fallback="msinm"):
    theta = math.acos(max(-1.0, min(1.0, c)))
    if fallback == "none" or theta + m <= math.pi:
        return math.cos(theta + m)
    return c - m * math.sin(m) if fallback == "msinm" else c


def psi(c, m):
    theta = math.acos(c)
    k = math.floor(m * theta / math.pi)
    return (-1) ** k * math.cos(m * theta) - 2 * k


def loop(fn, cos, labels, norms=None):
    out = []
    for i in range(B):
        row, y = cos[i].tolist(), int(labels[i])
        out.append(fn(row, y, None if norms is None else float(norms[i])))
    return torch.tensor(out, dtype=torch.float64)


def replace(row, y, value, scale):
    return [(value if j == y else c) * scale for j, c in enumerate(row)]


def ref_cosface(row, y, _):
    return replace(row, y, row[y] - 0.4 if y >= 0 else 0, 64)


def ref_arcface(fallback):
    return lambda row, y, _: replace(row, y, arc(row[y], 0.5, fallback) if y >= 0 else 0, 64)


def ref_easy(row, y, _):
    return replace(row, y, (arc(row[y], 0.5, "none") if row[y] > 0 else row[y]) if y >= 0 else 0, 64)


def ref_combined(row, y, _):
    t = math.cos(0.9 * math.acos(row[y]) + 0.2) - 0.1 if y >= 0 else 0
    return replace(row, y, t, 64)


def ref_sphereface(row, y, norm, lam=1000.0 / (1 + 0.12 * 1), m=4):
    out = [c * norm for c in row]
    if y >= 0:
        out[y] = norm * (lam * row[y] + psi(row[y], m)) / (1 + lam)
    return out


def ref_sphere_r(magn_type, m=1.4, s=60.0):
    def fn(row, y, _):
        out = []
        for j, c in enumerate(row):
            theta = math.acos(max(-1 + 1e-5, min(1 - 1e-5, c)))
            mt = theta * m if j == y else theta
            if magn_type == "v0":
                k = math.floor(mt / math.pi)
                v = (-1) ** k * math.cos(mt) - 2 * k
            elif magn_type == "v1":
                v = math.cos(max(1e-5, min(3.14159, mt)))
            else:
                v = math.cos(mt / m)
            out.append(s * v)
        return out

    return fn


def ref_mv(variant):
    def fn(row, y, _):
        if y < 0:
            return [32 * c for c in row]
        f = row[y] - 0.35 if variant == "am" else arc(row[y], 0.35, "none")
        target = f if variant == "am" else arc(row[y], 0.35, "msinm")
        return [32 * (target if j == y else (1.12 * c + 0.12 if c > f else c)) for j, c in enumerate(row)]

    return fn


def ref_circle(row, y, _, m=0.25, gamma=256):
    out = []
    for j, c in enumerate(row):
        if j == y:
            out.append(gamma * max(1 + m - c, 0) * (c - (1 - m)))
        else:
            out.append(gamma * max(c + m, 0) * (c - m))
    return out


def ref_npc(row, y, _):
    if y < 0:
        return [32 * c for c in row]
    bound = arc(row[y], 0.35, "none")
    hard = [c for j, c in enumerate(row) if j != y and c > bound]
    m_new = 0.4 + 0.2 * (sum(hard) / len(hard) if hard else 0.0)
    negs = [1.1 * c + 0.2 if c > bound else c for c in row]
    return [32 * (arc(row[y], m_new) if j == y else c) for j, c in enumerate(negs)]


def ref_magface(row, y, norm):
    a = min(110.0, max(10.0, norm))
    m = 0.45 + 0.35 * (a - 10) / 100
    return replace(row, y, arc(row[y], m) if y >= 0 else 0, 64)


def ref_arcneg(row, y, _):
    if y < 0:
        return [64 * c for c in row]
    t = arc(row[y], 0.5)
    out = []
    for j, c in enumerate(row):
        g = 1.2 * math.exp(-((c - t) ** 2) / 2.0)
        out.append(64 * (t if j == y else g * c + g - 1))
    return out


CASES = {
    "softmax": ({"s": 30.0}, lambda row, y, _: [30 * c for c in row]),
    "cosface": ({}, ref_cosface),
    "arcface": ({}, ref_arcface("msinm")),
    "arcface-cos": ({"fallback": "cos"}, ref_arcface("cos")),
    "arcface-none": ({"fallback": "none"}, ref_arcface("none")),
    "arcface-easy": ({"easy_margin": True}, ref_easy),
    "combined": ({"m1": 0.9, "m2": 0.2, "m3": 0.1}, ref_combined),
    "sphereface": ({"m": 4}, ref_sphereface),
    "sphereface-m3": ({"m": 3}, lambda r, y, n: ref_sphereface(r, y, n, m=3)),
    "sphereface_r-v0": ({"magn_type": "v0"}, ref_sphere_r("v0")),
    "sphereface_r-v1": ({"magn_type": "v1"}, ref_sphere_r("v1")),
    "sphereface_r-v2": ({"magn_type": "v2"}, ref_sphere_r("v2")),
    "mv_softmax-am": ({"variant": "am"}, ref_mv("am")),
    "mv_softmax-arc": ({"variant": "arc"}, ref_mv("arc")),
    "circleloss": ({}, ref_circle),
    "npcface": ({}, ref_npc),
    "magface": ({}, ref_magface),
    "arcnegface": ({}, ref_arcneg),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_head_matches_row_loop(case, dtype, rtol):
    kwargs, fn = CASES[case]
    cos, labels, norms = make_inputs()
    cos = cos.to(dtype)  # the loop sees exactly the values the head sees
    head = build_margin(case.split("-")[0], **kwargs).train()
    out = head(cos, labels, norms=norms.to(dtype))
    if isinstance(out, dict):
        out = out["logits"]
    ref = loop(fn, cos.double(), labels, norms.to(dtype).double())
    assert out.dtype == dtype
    err = (out.double() - ref).abs().max().item()
    assert err <= rtol * ref.abs().max().item(), f"{case}: {err}"


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_curricularface_row_loop(dtype, rtol):
    cos, labels, _ = make_inputs(1)
    cos = cos.to(dtype)
    head = build_margin("curricularface").train()
    head.t.fill_(0.3)
    out = head(cos, labels)
    c = cos.double()
    targets = [float(c[i, labels[i]]) for i in range(B) if labels[i] >= 0]
    t = 0.99 * 0.3 + 0.01 * sum(targets) / len(targets)  # updated before use
    ref = []
    for i in range(B):
        row, y = c[i].tolist(), int(labels[i])
        if y < 0:
            ref.append([64 * v for v in row])
            continue
        bound = arc(row[y], 0.5, "none")
        hard = [v * (t + v) if v > bound else v for v in row]
        ref.append([64 * (arc(row[y], 0.5) if j == y else v) for j, v in enumerate(hard)])
    ref = torch.tensor(ref, dtype=torch.float64)
    assert float(head.t) == pytest.approx(t, rel=1e-6)
    assert (out.double() - ref).abs().max().item() <= rtol * ref.abs().max().item()


@pytest.mark.parametrize("median", ["mean", "lower"])
def test_adacos_row_loop(median):
    cos, labels, _ = make_inputs(2)
    head = build_margin("adacos", num_classes=C, median=median).train()
    s_old = math.sqrt(2) * math.log(C - 1)
    b_avg = statistics.fmean(
        sum(math.exp(s_old * v) for j, v in enumerate(cos[i].tolist()) if j != labels[i]) for i in range(B)
    )
    thetas = sorted(math.acos(float(cos[i, labels[i]])) for i in range(B) if labels[i] >= 0)
    med = statistics.median(thetas) if median == "mean" else statistics.median_low(thetas)
    s_new = math.log(b_avg) / math.cos(min(math.pi / 4, med))
    out = head(cos, labels)
    assert float(head.scale) == pytest.approx(s_new, rel=1e-12)
    torch.testing.assert_close(out, cos * s_new, rtol=1e-12, atol=0)


def test_adam_softmax_row_loop():
    cos, labels, _ = make_inputs(3)
    head = build_margin("adam_softmax", num_classes=C, s=32, lamda=70).double().train()
    with torch.no_grad():
        head.margins.copy_(torch.linspace(-0.2, 1.3, C, dtype=torch.float64))
    out = head(cos, labels)
    m = [min(1.0, max(0.0, v)) for v in torch.linspace(-0.2, 1.3, C, dtype=torch.float64).tolist()]
    ref = loop(lambda row, y, _: replace(row, y, row[y] - m[y] if y >= 0 else 0, 32), cos, labels)
    torch.testing.assert_close(out["logits"], ref, rtol=0, atol=1e-10 * 32)
    assert float(out["loss_margin"].detach()) == pytest.approx(70 * (1 - sum(m) / C), rel=1e-12)


# --- MHE energies of SphereFace+, as plain loops over class pairs
def _unit(seed=4, n=C, d=5):
    w = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.nn.functional.normalize(w, dim=1)


def _dot(w, i, j):
    return sum(a * b for a, b in zip(w[i].tolist(), w[j].tolist()))


@pytest.mark.parametrize("power", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("distance", ["euclidean", "angular"])
def test_mhe_paper_row_loop(power, distance):
    w = _unit()
    labels = torch.tensor([0, 3, 3, 5, -1, 7])
    f = (lambda z: math.log(1 / z)) if power == 0 else (lambda z: z ** (-power))
    terms = []
    for y in labels.tolist():
        if y < 0:
            continue
        for j in range(C):
            if j != y:
                dot = _dot(w, y, j)
                z = math.acos(dot) if distance == "angular" else math.sqrt(2 - 2 * dot)
                terms.append(f(z))
    ref = sum(terms) / len(terms)
    assert float(mhe_energy(w, labels, "paper", power, distance)) == pytest.approx(ref, rel=1e-9)


def test_mhe_opensphere_and_layer_row_loop():
    w = _unit(5)
    labels = torch.tensor([2, 2, 6, 1, -1])
    classes = sorted({y for y in labels.tolist() if y >= 0})
    pairs = [(a, b) for i, a in enumerate(classes) for b in classes[i + 1:]]
    ref = sum(math.acos(_dot(w, a, b)) ** -2 for a, b in pairs) / len(pairs)
    assert float(mhe_energy(w, labels, "opensphere", 2.0)) == pytest.approx(ref, rel=1e-9)
    layer = [(math.acos(_dot(w, i, j)) / math.pi + 1e-4) ** -2 for i in range(C) for j in range(C) if i != j]
    assert float(mhe_energy(w, labels, "layer", 2.0)) == pytest.approx(sum(layer) / len(layer), rel=1e-9)
    # one class: no pairs, 0 (OpenSphere gives NaN)
    assert float(mhe_energy(w, torch.tensor([4, 4]), "opensphere", 2.0)) == 0.0
