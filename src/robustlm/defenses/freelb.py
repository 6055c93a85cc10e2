"""FreeLB (Zhu et al. 2019): K ascent steps on an L2-bounded embedding perturbation whose backward passes
also accumulate the parameter gradients ("free" adversarial training), averaged over the K steps."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Defense, at, embedded_inputs, labelled_positions, padding_mask
from .embedding import project_l2


class FreeLB(Defense):
    name = "freelb"

    def __init__(self, steps: int, step_size: float, init_magnitude: float, epsilon: float):
        super().__init__(steps=steps, step_size=step_size, init_magnitude=init_magnitude, epsilon=epsilon)
        self.steps, self.step_size, self.init_magnitude, self.epsilon = steps, step_size, init_magnitude, epsilon

    @property
    def extra_passes(self) -> int:
        return self.steps - 1

    def initial_perturbation(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Uniform noise scaled by init_magnitude / sqrt(tokens x hidden), as in the reference code."""
        lengths = mask.sum(dim=(1, 2)) * embeddings.shape[-1]
        delta = (torch.rand_like(embeddings) * 2 - 1) * mask
        delta = delta * (self.init_magnitude / lengths.sqrt()).view(-1, 1, 1)
        return project_l2(delta, self.epsilon)

    def ascend(self, delta: torch.Tensor, gradient: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        norms = gradient.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)
        return project_l2((delta + self.step_size * gradient / norms) * mask, self.epsilon).detach()

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
        with torch.no_grad():
            embeddings, inputs = embedded_inputs(model, batch)
            mask = padding_mask(inputs, embeddings)
            delta = self.initial_perturbation(embeddings, mask)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            with autocast():
                embeddings, inputs = embedded_inputs(model, batch)  # re-embedded: each backward frees the graph
                loss = self.step_loss(model, embeddings + delta, inputs, batch["labels"])
            loss.backward()  # accumulates the parameter gradients and delta.grad in one pass
            total += loss.detach()
            delta = self.ascend(delta, delta.grad, mask)
        return total
