"""Smoothness-inducing adversarial regularisation in embedding space: SMART/VAT (Jiang et al. 2019) and
TAT (Pereira et al. 2021, Algorithm 1), which differ only in where the perturbation steps.

Both: delta ~ N(0, sigma^2 I) on the word embeddings; K steps delta <- Pi_{||delta||_inf <= eps}(delta +- eta * d),
with d the gradient normalised by its per-example max-norm (as MT-DNN, the reference implementation, does);
then the update on l(f(x), y) + alpha * l_s(f(x), f(x + delta)), l_s the symmetric KL divergence.
SMART steps *up* the divergence from the clean prediction; TAT steps *down* the cross-entropy towards a
target label y_t != y, drawn in proportion to a running per-class tally e(y, y_t) of the model's errors
(uniform at first, re-estimated after every epoch from the training predictions).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .embedding import EmbeddingSpaceAdversary


def project_linf(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    return delta.clamp(-epsilon, epsilon)


def symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """KL(p || q) + KL(q || p); zero when the two predictions agree."""
    log_p, log_q = F.log_softmax(logits_p, dim=-1), F.log_softmax(logits_q, dim=-1)
    return (F.kl_div(log_q, log_p, reduction=reduction, log_target=True)
            + F.kl_div(log_p, log_q, reduction=reduction, log_target=True))


def normalized(gradient: torch.Tensor) -> torch.Tensor:
    scale = gradient.flatten(1).abs().amax(dim=1).clamp_min(1e-12)
    return gradient / scale.view(-1, *([1] * (gradient.dim() - 1)))


class SmoothnessRegularizer(EmbeddingSpaceAdversary):
    def project(self, delta):
        return project_linf(delta, self.epsilon)

    def direction(self, gradient):
        return normalized(gradient)

    def adversarial_loss(self, perturbed_logits, clean_logits, labels, reduction="mean"):
        return symmetric_kl(clean_logits, perturbed_logits, reduction="batchmean" if reduction == "mean" else reduction)


class Smart(SmoothnessRegularizer):
    """SMART's smoothness-inducing regulariser (virtual adversarial training, Jiang et al. 2019)."""

    name = "smart"


class Tat(SmoothnessRegularizer):
    """Targeted adversarial training (Pereira et al. 2021)."""

    name = "tat"

    def __init__(self, **params):
        super().__init__(**params)
        # on the training device, so that sampling targets and tallying predictions never wait for the GPU
        self.error_tally: torch.Tensor | None = None  # e(y, y_t), sized on the first batch
        self.epoch_confusion: torch.Tensor | None = None

    def _ensure_tally(self, num_labels: int, device: torch.device) -> None:
        if self.error_tally is None:
            off_diagonal = 1 - torch.eye(num_labels)
            self.error_tally = off_diagonal / off_diagonal.sum(1, keepdim=True)  # uniform over wrong labels
            self.epoch_confusion = torch.zeros(num_labels, num_labels)
        self.error_tally, self.epoch_confusion = self.error_tally.to(device), self.epoch_confusion.to(device)

    def sample_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """y_t ~ e(y, .), which is zero on the gold label (Algorithm 1, line 3)."""
        return torch.multinomial(self.error_tally[labels], 1).squeeze(1)

    def perturbation(self, model, embeddings, inputs, clean_logits, labels, positions):
        # one target per example (per token, when tagging) for all K steps; the ascent treats it as its label
        return super().perturbation(model, embeddings, inputs, clean_logits, self.sample_targets(labels), positions)

    def ascent_objective(self, perturbed_logits, clean_logits, targets):
        # stepping *down* the cross-entropy towards the target (Algorithm 1, lines 5-6)
        return -F.cross_entropy(perturbed_logits, targets, reduction="sum")

    def observe(self, clean_logits, labels):
        self._ensure_tally(clean_logits.shape[-1], clean_logits.device)
        self.epoch_confusion.index_put_((labels, clean_logits.argmax(-1)),
                                        torch.ones_like(labels, dtype=self.epoch_confusion.dtype), accumulate=True)

    def on_epoch_end(self):
        if self.epoch_confusion is not None:
            self.error_tally = self.tally_from_confusion(self.epoch_confusion, self.error_tally)
            self.epoch_confusion = torch.zeros_like(self.epoch_confusion)

    @staticmethod
    def tally_from_confusion(confusion: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Row-normalised errors; a class the model made no errors on keeps its previous distribution."""
        errors = confusion * (1 - torch.eye(len(confusion), device=confusion.device))
        totals = errors.sum(1, keepdim=True)
        return torch.where(totals > 0, errors / totals.clamp_min(1), previous)

    def state_dict(self):
        # loaded on the CPU when resumed; `observe` moves them back to the device
        return {"error_tally": self.error_tally, "epoch_confusion": self.epoch_confusion}

    def load_state_dict(self, state):
        self.error_tally, self.epoch_confusion = state["error_tally"], state["epoch_confusion"]
