"""FreeLB (Zhu et al. 2019): K ascent steps on an L2-bounded embedding perturbation whose backward passes
also accumulate the parameter gradients ("free" adversarial training), averaged over the K steps."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Defense, at, embedded_inputs, labelled_positions, padding_mask
from .diagnostics import PerturbationMonitor
from .embedding import PRECISIONS, Perturbation, arithmetic
from .geometry import normalize, project

NORM = "example_l2"  # FreeLB bounds each example's perturbation as a whole


class FreeLB(Defense):
    name = "freelb"

    def __init__(self, steps: int, step_size: float, init_magnitude: float, epsilon: float, precision: str = "float32"):
        super().__init__(
            steps=steps, step_size=step_size, init_magnitude=init_magnitude, epsilon=epsilon, precision=precision
        )
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision '{precision}'; known: {', '.join(PRECISIONS)}")
        self.steps, self.step_size, self.init_magnitude, self.epsilon = steps, step_size, init_magnitude, epsilon
        self.precision = precision
        self.monitor = PerturbationMonitor(NORM, epsilon)

    @property
    def extra_passes(self) -> int:
        return self.steps - 1

    def initial_perturbation(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Uniform noise scaled by init_magnitude / sqrt(tokens x hidden), as in the reference code."""
        lengths = mask.sum(dim=(1, 2)) * embeddings.shape[-1]
        delta = (torch.rand_like(embeddings) * 2 - 1) * mask
        delta = delta * (self.init_magnitude / lengths.sqrt()).view(-1, 1, 1)
        return project(delta, self.epsilon, NORM)

    def ascend(self, delta: torch.Tensor, gradient: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return project((delta + self.step_size * normalize(gradient, NORM)) * mask, self.epsilon, NORM).detach()

    def step_loss(self, model, perturbed_embeddings, inputs, labels) -> torch.Tensor:
        positions = labelled_positions(labels)
        logits = model(inputs_embeds=perturbed_embeddings, **inputs).logits
        return F.cross_entropy(at(logits, positions), at(labels, positions)) / self.steps

    def loss(self, model, batch):
        """The FreeLB objective (1/K) sum_t l(f(x + delta_t), y) by plain autograd. `backward` gives the same
        gradients with one backward pass per step instead of two; this form documents and tests it."""
        embeddings, inputs = embedded_inputs(model, batch)
        mask = padding_mask(inputs, embeddings)
        delta = self.initial_perturbation(embeddings.detach(), mask)
        total = 0.0
        for _ in range(self.steps):
            delta.requires_grad_(True)
            loss = self.step_loss(model, embeddings + delta, inputs, batch["labels"])
            (gradient,) = torch.autograd.grad(loss, delta, retain_graph=True)
            total = total + loss
            delta = self.ascend(delta, gradient, mask)
        return total

    def backward(self, model, batch, autocast):
        total = 0.0
        step_context = (
            (lambda: arithmetic(self.precision, batch["input_ids"].device)) if self.precision == "float32" else autocast
        )
        with torch.no_grad():
            embeddings, inputs = embedded_inputs(model, batch)
            mask = padding_mask(inputs, embeddings)
            start = delta = self.initial_perturbation(embeddings, mask)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            with step_context():
                embeddings, inputs = embedded_inputs(model, batch)  # re-embedded: each backward frees the graph
                loss = self.step_loss(model, embeddings + delta, inputs, batch["labels"])
            loss.backward()  # accumulates the parameter gradients and delta.grad in one pass
            total += loss.detach()
            delta = self.ascend(delta, delta.grad, mask)
        if self.measuring:
            with step_context():
                self.monitor.record(model, self.perturbation(model, batch, start, delta), self.objective)
        return total

    @staticmethod
    def perturbation(model, batch, start, delta) -> Perturbation:
        with torch.no_grad():
            embeddings, inputs = embedded_inputs(model, batch)
        positions = labelled_positions(batch["labels"])
        labels = at(batch["labels"], positions)
        return Perturbation(embeddings, inputs, positions, labels, labels, None, start, delta)

    @staticmethod
    def objective(perturbed_logits, clean_logits, labels):
        return F.cross_entropy(perturbed_logits, labels, reduction="sum")

    def perturbation_report(self):
        return self.monitor.report()
