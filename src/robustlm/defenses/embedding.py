"""Embedding-space adversarial training: PGD-AT and LDS, Algorithm 1 of Altinisik et al., and the machinery every
defense that perturbs the word embeddings shares (SMART/VAT and TAT in smoothness.py, FreeLB's geometry).

Algorithm 1: delta ~ N(0, sigma^2) on the input embeddings; S ascent steps delta <- Pi(delta + mu * g_adv) with Pi
the projection onto the ball ||delta|| <= epsilon; then the update on l(f(x), y) + w * l_adv, where l_adv is the
task loss at x + delta (PGD-AT) or the divergence between f(x) and f(x + delta) (LDS).

The paper leaves two choices open; each reading is an option:
- `norm`, the ball. §4 bounds "the perturbations L2-norm to 0.003", one norm per perturbation: `example_l2`, over
  every token and dimension of an example (FreeLB bounds the same norm). `token_l2` bounds each token's vector.
  §3 says δ is "clipped to within ±ε by the projection function": `elementwise`, each coordinate.
- `step`. `raw` is mu * g, as Algorithm 1 prints it; its length is mu times the gradient's, whose scale differs
  between models and objectives (LDS's divergence has zero gradient at delta = 0). `normalized` is mu * g / ||g||,
  g scaled to unit size in the ball's norm (L2 per example or per token as VAT and FreeLB; per token's largest
  coordinate for `elementwise`, as MT-DNN normalises SMART's step), so mu alone sets how far a step goes.

`precision: float32` computes the whole step (the clean and perturbed forward passes and the ascent) with autocast
off. Under bf16 autocast (the training loop's on GPU) the rounding of each forward pass changes the logits by as
much as a small delta does, so f(x + delta) - f(x) would be mostly rounding noise.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import Defense, at, embedded_inputs, labelled_positions, padding_mask
from .diagnostics import PerturbationMonitor
from .geometry import NORMS, STEPS, normalize, project

PRECISIONS = ("float32", "bfloat16")


def kl_divergence(
    clean_logits: torch.Tensor, perturbed_logits: torch.Tensor, reduction: str = "batchmean"
) -> torch.Tensor:
    """KL(p(x) || p(x + delta)); zero when the logits agree."""
    return F.kl_div(
        F.log_softmax(perturbed_logits, dim=-1),
        F.log_softmax(clean_logits, dim=-1),
        reduction=reduction,
        log_target=True,
    )


def arithmetic(precision: str, device: torch.device):
    """The context a step runs in: autocast off for `float32`; the training loop's own for `bfloat16`."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; known: {', '.join(PRECISIONS)}")
    return torch.autocast(device.type, enabled=False) if precision == "float32" else nullcontext()


@dataclass
class Perturbation:
    """One step's perturbation of a batch: the inputs it was found for, the clean predictions at the scored
    positions, and delta at its random start and after the ascent."""

    embeddings: torch.Tensor
    inputs: dict
    positions: torch.Tensor | None
    labels: torch.Tensor  # the task's labels at the scored positions
    ascent_labels: torch.Tensor  # what the ascent's objective reads as labels (TAT: its targets)
    clean_logits: torch.Tensor
    start: torch.Tensor
    delta: torch.Tensor


class EmbeddingSpaceAdversary(Defense):
    """Perturb the word embeddings by projected ascent, then train on the clean loss plus an adversarial term.

    The hooks (`ascent_objective`, `adversarial_loss`) are Algorithm 1's; the smoothness regularisers
    (smoothness.py) make other choices."""

    def __init__(
        self,
        steps: int,
        epsilon: float | None,
        step_size: float,
        init_std: float,
        adversarial_weight: float = 1.0,
        norm: str = "example_l2",
        step: str = "raw",
        precision: str = "float32",
    ):
        super().__init__(
            steps=steps,
            epsilon=epsilon,
            step_size=step_size,
            init_std=init_std,
            adversarial_weight=adversarial_weight,
            norm=norm,
            step=step,
            precision=precision,
        )
        if norm not in NORMS or step not in STEPS or precision not in PRECISIONS:
            raise ValueError(
                f"norm, step, precision must be one of {NORMS}, {STEPS}, {PRECISIONS}; got {norm}, {step}, {precision}"
            )
        self.steps, self.epsilon, self.step_size, self.init_std = steps, epsilon, step_size, init_std
        self.adversarial_weight, self.norm, self.step, self.precision = adversarial_weight, norm, step, precision
        self.monitor = PerturbationMonitor(norm, epsilon)

    @property
    def extra_passes(self) -> int:
        return self.steps + 1

    def direction(self, gradient: torch.Tensor) -> torch.Tensor:
        return normalize(gradient, self.norm) if self.step == "normalized" else gradient

    @abstractmethod
    def adversarial_loss(self, perturbed_logits, clean_logits, labels, reduction="mean") -> torch.Tensor:
        """l_adv, the term added to the clean loss in the parameter update."""

    def ascent_objective(self, perturbed_logits, clean_logits, labels) -> torch.Tensor:
        # summed, so each example's delta follows its own loss regardless of batch size
        return self.adversarial_loss(perturbed_logits, clean_logits, labels, reduction="sum")

    def ascent_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels the ascent's objective reads (TAT draws targets here)."""
        return labels

    def observe(self, clean_logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Hook for defenses that learn from the training predictions (TAT)."""

    def perturb(self, model, batch) -> Perturbation:
        """The clean forward pass and S ascent steps from a Gaussian start (gradients w.r.t. delta only; the
        parameters' gradients are untouched)."""
        embeddings, inputs = embedded_inputs(model, batch)
        positions = labelled_positions(batch["labels"])
        labels = at(batch["labels"], positions)
        clean_logits = at(model(inputs_embeds=embeddings, **inputs).logits, positions)
        self.observe(clean_logits.detach(), labels)
        ascent_labels = self.ascent_labels(labels)
        mask = padding_mask(inputs, embeddings)
        start = self.into_ball(torch.randn_like(embeddings) * self.init_std * mask)
        delta = start
        for _ in range(self.steps):
            delta = delta.detach().requires_grad_(True)
            logits = at(model(inputs_embeds=embeddings.detach() + delta, **inputs).logits, positions)
            objective = self.ascent_objective(logits, clean_logits.detach(), ascent_labels)
            (gradient,) = torch.autograd.grad(objective, delta)
            delta = self.into_ball((delta + self.step_size * self.direction(gradient)) * mask)
        return Perturbation(embeddings, inputs, positions, labels, ascent_labels, clean_logits, start, delta.detach())

    def into_ball(self, delta: torch.Tensor) -> torch.Tensor:
        return project(delta, self.epsilon, self.norm)

    def perturbed_predictions(self, model, batch) -> tuple[Perturbation, torch.Tensor]:
        """The step's perturbation and the logits at x + delta, computed in the defense's `precision`."""
        with arithmetic(self.precision, batch["input_ids"].device):
            perturbation = self.perturb(model, batch)
            return perturbation, at(
                model(inputs_embeds=perturbation.embeddings + perturbation.delta, **perturbation.inputs).logits,
                perturbation.positions,
            )

    def loss(self, model, batch):
        with arithmetic(self.precision, batch["input_ids"].device):
            perturbation, perturbed_logits = self.perturbed_predictions(model, batch)
            if self.measuring:
                self.monitor.record(model, perturbation, self.ascent_objective)
            return F.cross_entropy(
                perturbation.clean_logits, perturbation.labels
            ) + self.adversarial_weight * self.adversarial_loss(
                perturbed_logits, perturbation.clean_logits, perturbation.labels
            )

    def perturbation_report(self) -> dict | None:
        return self.monitor.report()


class PgdAt(EmbeddingSpaceAdversary):
    """PGD-AT: the task loss at x + delta."""

    name = "pgd_at"

    def adversarial_loss(self, perturbed_logits, clean_logits, labels, reduction="mean"):
        return F.cross_entropy(perturbed_logits, labels, reduction=reduction)


class Lds(EmbeddingSpaceAdversary):
    """LDS: local distributional smoothness, KL between f(x) and f(x + delta)."""

    name = "lds"

    def adversarial_loss(self, perturbed_logits, clean_logits, labels, reduction="mean"):
        return kl_divergence(
            clean_logits, perturbed_logits, reduction="batchmean" if reduction == "mean" else reduction
        )
