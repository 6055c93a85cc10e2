"""Embedding-space adversarial training, Algorithm 1 of Altinisik et al.: PGD-AT and LDS.

delta ~ N(0, sigma^2) on the input embeddings; S ascent steps delta <- Pi(delta + mu * g_adv) with Pi the
projection onto the per-example L2 ball ||delta|| <= epsilon; then the update on
l(f(x), y) + w * l_adv, where l_adv is the task loss at x + delta (PGD-AT) or the divergence between
f(x) and f(x + delta) (LDS).
"""
from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F

from .base import Defense, at, embedded_inputs, labelled_positions, padding_mask


def project_l2(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Scale each example's perturbation (all its tokens and dimensions) into the L2 ball of radius epsilon."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * (epsilon / norms).clamp(max=1.0).view(-1, *([1] * (delta.dim() - 1)))


def kl_divergence(clean_logits: torch.Tensor, perturbed_logits: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """KL(p(x) || p(x + delta)); zero when the logits agree."""
    return F.kl_div(F.log_softmax(perturbed_logits, dim=-1), F.log_softmax(clean_logits, dim=-1),
                    reduction=reduction, log_target=True)


class EmbeddingSpaceAdversary(Defense):
    """Perturb the word embeddings by projected ascent, then train on the clean loss plus an adversarial term.

    The hooks (`project`, `direction`, `ascent_objective`, `adversarial_loss`) are Algorithm 1's choices;
    the smoothness regularisers (smoothness.py) make other ones."""

    def __init__(self, steps: int, epsilon: float, step_size: float, init_std: float, adversarial_weight: float = 1.0):
        super().__init__(steps=steps, epsilon=epsilon, step_size=step_size, init_std=init_std,
                         adversarial_weight=adversarial_weight)
        self.steps, self.epsilon, self.step_size, self.init_std = steps, epsilon, step_size, init_std
        self.adversarial_weight = adversarial_weight

    @property
    def extra_passes(self) -> int:
        return self.steps + 1

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        return project_l2(delta, self.epsilon)

    def direction(self, gradient: torch.Tensor) -> torch.Tensor:
        """The ascent step's direction (Algorithm 1: the raw gradient)."""
        return gradient

    @abstractmethod
    def adversarial_loss(self, perturbed_logits, clean_logits, labels, reduction="mean") -> torch.Tensor:
        """l_adv, the term added to the clean loss in the parameter update."""

    def ascent_objective(self, perturbed_logits, clean_logits, labels) -> torch.Tensor:
        # summed, so each example's delta follows its own loss regardless of batch size
        return self.adversarial_loss(perturbed_logits, clean_logits, labels, reduction="sum")

    def perturbation(self, model, embeddings, inputs, clean_logits, labels, positions) -> torch.Tensor:
        """S ascent steps from a Gaussian start (gradients w.r.t. delta only; parameters untouched)."""
        mask = padding_mask(inputs, embeddings)
        delta = self.project(torch.randn_like(embeddings) * self.init_std * mask)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            logits = at(model(inputs_embeds=embeddings.detach() + delta, **inputs).logits, positions)
            (gradient,) = torch.autograd.grad(self.ascent_objective(logits, clean_logits.detach(), labels), delta)
            delta = self.project((delta + self.step_size * self.direction(gradient)) * mask).detach()
        return delta

    def observe(self, clean_logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Hook for defenses that learn from the training predictions (TAT)."""

    def loss(self, model, batch):
        embeddings, inputs = embedded_inputs(model, batch)
        positions = labelled_positions(batch["labels"])
        labels = at(batch["labels"], positions)
        clean_logits = at(model(inputs_embeds=embeddings, **inputs).logits, positions)
        self.observe(clean_logits.detach(), labels)
        delta = self.perturbation(model, embeddings, inputs, clean_logits, labels, positions)
        perturbed_logits = at(model(inputs_embeds=embeddings + delta, **inputs).logits, positions)
        return F.cross_entropy(clean_logits, labels) + self.adversarial_weight * self.adversarial_loss(
            perturbed_logits, clean_logits, labels)


class PgdAt(EmbeddingSpaceAdversary):
    """PGD-AT: the task loss at x + delta."""

    name = "pgd_at"

    def adversarial_loss(self, perturbed_logits, clean_logits, labels, reduction="mean"):
        return F.cross_entropy(perturbed_logits, labels, reduction=reduction)


class Lds(EmbeddingSpaceAdversary):
    """LDS: local distributional smoothness, KL between f(x) and f(x + delta)."""

    name = "lds"

    def adversarial_loss(self, perturbed_logits, clean_logits, labels, reduction="mean"):
        return kl_divergence(clean_logits, perturbed_logits, reduction="batchmean" if reduction == "mean" else reduction)
