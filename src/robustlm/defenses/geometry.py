"""The geometry of embedding perturbations [B, T, d]: their size in each norm a defense may bound them in, the
projection onto that ball, and the normalised step direction."""

from __future__ import annotations

import torch

NORMS = ("example_l2", "token_l2", "elementwise")
STEPS = ("raw", "normalized")
#: added to the per-token largest coordinate when normalising an `elementwise` step, as MT-DNN's SMART does
MAX_NORM_STABILIZER = 1e-6


def unit_sizes(values: torch.Tensor, norm: str) -> torch.Tensor:
    """The size of `values` [B, T, d] in `norm`, broadcastable against it: each example's L2 norm ([B, 1, 1]), each
    token's L2 norm or each token's largest absolute coordinate ([B, T, 1])."""
    if norm == "example_l2":
        return values.flatten(1).norm(dim=1).view(-1, *([1] * (values.dim() - 1)))
    if norm == "token_l2":
        return values.norm(dim=-1, keepdim=True)
    if norm == "elementwise":
        return values.abs().amax(dim=-1, keepdim=True)
    raise ValueError(f"unknown norm '{norm}'; known: {', '.join(NORMS)}")


def project(delta: torch.Tensor, epsilon: float | None, norm: str) -> torch.Tensor:
    """Pi: delta moved into the ball of radius epsilon in `norm` (scaled for the L2 balls, clipped coordinate by
    coordinate for `elementwise`); unchanged when epsilon is None."""
    if epsilon is None:
        return delta
    if norm == "elementwise":
        return delta.clamp(-epsilon, epsilon)
    return delta * (epsilon / unit_sizes(delta, norm).clamp_min(1e-12)).clamp(max=1.0)


def normalize(gradient: torch.Tensor, norm: str) -> torch.Tensor:
    """The gradient scaled to unit size in `norm` (zero where it is zero, e.g. on padding)."""
    if norm == "elementwise":
        return gradient / (unit_sizes(gradient, norm) + MAX_NORM_STABILIZER)
    return gradient / unit_sizes(gradient, norm).clamp_min(1e-12)


def perturbation_sizes(delta: torch.Tensor, norm: str, token_mask: torch.Tensor) -> torch.Tensor:
    """Each example's perturbation size in `norm` [B]: its L2 norm, its tokens' mean L2 norm, or its largest
    coordinate (`token_mask` [B, T] marks real tokens)."""
    sizes = unit_sizes(delta, norm)
    if norm == "token_l2":
        return (sizes.squeeze(-1) * token_mask).sum(1) / token_mask.sum(1).clamp_min(1)
    return sizes.flatten(1).amax(dim=1)


def random_like(delta: torch.Tensor, norm: str, generator: torch.Generator) -> torch.Tensor:
    """A Gaussian direction with delta's size in `norm`, per example or per token as the norm measures it, and zero
    wherever delta is (padding)."""
    noise = torch.randn(delta.shape, generator=generator, device=delta.device, dtype=delta.dtype) * (delta != 0)
    return noise * unit_sizes(delta, norm) / unit_sizes(noise, norm).clamp_min(1e-30)
