"""Angular helpers shared by several margins (cos ↔ θ, ArcFace target, SphereFace ψ)."""

from __future__ import annotations

import math

import torch


def safe_sin(c: torch.Tensor) -> torch.Tensor:
    """sin θ = √(1 − c²) for cos θ = c, exact in value; its derivative is taken with one ulp under the
    root, so it stays finite (≈ 1/√eps) at |c| = 1 where the true one is infinite."""
    one_minus = 1.0 - c * c
    floored = torch.sqrt(one_minus.clamp(min=torch.finfo(c.dtype).eps))
    return floored + (torch.sqrt(one_minus.clamp(min=0.0)) - floored).detach()


def arc_target(c: torch.Tensor, m, fallback: str = "msinm") -> torch.Tensor:
    """cos(θ + m) for cos θ = c (m a float or a tensor broadcastable to c).

    ``fallback`` says what to use where θ + m > π, where cos(θ + m) stops decreasing in θ:
    ``"msinm"`` cos θ − m·sin m (InsightFace's ArcFace code), ``"cos"`` cos θ (no margin; FaceX-Zoo
    with ``margin_am=0``), ``"none"`` keep cos(θ + m) (arcface_torch).
    """
    c = c.clamp(-1.0, 1.0)
    m = torch.as_tensor(m, dtype=c.dtype, device=c.device)
    phi = c * torch.cos(m) - safe_sin(c) * torch.sin(m)
    if fallback == "none":
        return phi
    inside = c > torch.cos(math.pi - m)
    if fallback == "msinm":
        return torch.where(inside, phi, c - m * torch.sin(m))
    if fallback == "cos":
        return torch.where(inside, phi, c)
    raise ValueError(f"unknown fallback {fallback!r}")


def chebyshev_cos(c: torch.Tensor, m: int) -> torch.Tensor:
    """cos(mθ) as the Chebyshev polynomial T_m(cos θ) (exact derivative without acos)."""
    t_prev, t = torch.ones_like(c), c
    if m == 0:
        return t_prev
    for _ in range(m - 1):
        t_prev, t = t, 2.0 * c * t - t_prev
    return t


def sphere_psi(c: torch.Tensor, m: int) -> torch.Tensor:
    """SphereFace's ψ(θ) = (−1)^k cos(mθ) − 2k, k = ⌊mθ/π⌋ (CVPR'17 Eq. 7); k is piecewise constant."""
    with torch.no_grad():
        k = torch.floor(m * torch.acos(c.clamp(-1.0, 1.0)) / math.pi)
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * chebyshev_cos(c, m) - 2.0 * k


def psi_of_angle(m_theta: torch.Tensor) -> torch.Tensor:
    """ψ for an already multiplied angle mθ (fractional m): (−1)^k cos(mθ) − 2k, k = ⌊mθ/π⌋."""
    k = torch.floor(m_theta / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(m_theta) - 2.0 * k
