"""Smoothness-inducing adversarial regularisation in embedding space: SMART/VAT (Jiang et al. 2019) and TAT
(Pereira et al. 2021, Algorithm 1), as MT-DNN, the code of both papers, computes them. They differ only in where
the perturbation steps.

Both: delta ~ N(0, sigma^2 I) on the word embeddings; K steps delta <- delta + eta * g / (max_j |g_j| + 1e-6), the
gradient normalised per token along the hidden dimension (`norm: elementwise`, `step: normalized`: MT-DNN's
`_norm_grad` with p = inf); then the update on l(f(x), y) + alpha * l_s(f(x), f(x + delta)), l_s the symmetric KL
divergence with each direction's target detached (MT-DNN's SymKlCriterion). SMART steps *up* the divergence from
the clean prediction; TAT steps *down* the cross-entropy towards a target label y_t != y, drawn in proportion to a
running per-class tally e(y, y_t) of the model's errors (uniform at first, re-estimated after every epoch from the
training predictions), for any number of classes.

Where the papers and MT-DNN differ:
- the papers clip delta to ||delta||_inf <= eps = 1e-5 (SMART's Algorithm 1, TAT's line 6); MT-DNN does not clip.
  Followed: MT-DNN (`epsilon: null`); a number restores the papers' clip.
- TAT's Algorithm 1 steps along the raw gradient; MT-DNN normalises each token's step. Followed: MT-DNN
  (`step: normalized`; `raw` is the printed algorithm).
- MT-DNN since December 2020 normalises delta + eta * g itself, so each token's delta has a largest coordinate of
  about 1 (in its post-LayerNorm embedding space) whatever eta is. Followed: its first version (April 2020) and
  SMART's Algorithm 1, where eta is the step's length, since delta here perturbs word embeddings, whose coordinates
  are a few hundredths.
- TAT trains with Adamax (MT-DNN's AdamaxW) for 6 epochs: `training: {optimizer: adamax, ...}` per defense; the
  paper also names Lookahead, which MT-DNN's code never had.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .embedding import EmbeddingSpaceAdversary


def symmetric_kl(
    clean_logits: torch.Tensor, perturbed_logits: torch.Tensor, reduction: str = "batchmean"
) -> torch.Tensor:
    """KL(sg(q) || p) + KL(sg(p) || q), p = softmax(clean), q = softmax(perturbed), sg = no gradient: the symmetric
    KL's value, with each term's gradient reaching only the distribution it scores (MT-DNN's SymKlCriterion)."""
    log_p, log_q = F.log_softmax(clean_logits, dim=-1), F.log_softmax(perturbed_logits, dim=-1)
    return F.kl_div(log_p, log_q.detach(), reduction=reduction, log_target=True) + F.kl_div(
        log_q, log_p.detach(), reduction=reduction, log_target=True
    )


class SmoothnessRegularizer(EmbeddingSpaceAdversary):
    def __init__(
        self,
        steps: int,
        step_size: float,
        init_std: float,
        epsilon: float | None = None,
        adversarial_weight: float = 1.0,
        norm: str = "elementwise",
        step: str = "normalized",
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
        self.tally_by_epoch: list[torch.Tensor] = []  # e(y, y_t) after each epoch: whether the targeting targets

    def _ensure_tally(self, num_labels: int, device: torch.device) -> None:
        if self.error_tally is None:
            off_diagonal = 1 - torch.eye(num_labels)
            self.error_tally = off_diagonal / off_diagonal.sum(1, keepdim=True)  # uniform over wrong labels
            self.epoch_confusion = torch.zeros(num_labels, num_labels)
        self.error_tally, self.epoch_confusion = self.error_tally.to(device), self.epoch_confusion.to(device)

    def sample_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """y_t ~ e(y, .), which is zero on the gold label (Algorithm 1, line 3)."""
        return torch.multinomial(self.error_tally[labels], 1).squeeze(1)

    def ascent_labels(self, labels):
        # one target per example (per token, when tagging) for all K steps
        return self.sample_targets(labels)

    def ascent_objective(self, perturbed_logits, clean_logits, targets):
        # stepping *down* the cross-entropy towards the target (Algorithm 1, lines 5-6)
        return -F.cross_entropy(perturbed_logits, targets, reduction="sum")

    def observe(self, clean_logits, labels):
        self._ensure_tally(clean_logits.shape[-1], clean_logits.device)
        self.epoch_confusion.index_put_(
            (labels, clean_logits.argmax(-1)),
            torch.ones_like(labels, dtype=self.epoch_confusion.dtype),
            accumulate=True,
        )

    def on_epoch_end(self):
        if self.epoch_confusion is not None:
            self.error_tally = self.tally_from_confusion(self.epoch_confusion, self.error_tally)
            self.epoch_confusion = torch.zeros_like(self.epoch_confusion)
            self.tally_by_epoch.append(self.error_tally.clone())

    @staticmethod
    def tally_from_confusion(confusion: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Row-normalised errors; a class the model made no errors on keeps its previous distribution."""
        errors = confusion * (1 - torch.eye(len(confusion), device=confusion.device))
        totals = errors.sum(1, keepdim=True)
        return torch.where(totals > 0, errors / totals.clamp_min(1), previous)

    def report(self):
        return {
            "error_tally": self.error_tally.tolist() if self.error_tally is not None else None,
            "error_tally_by_epoch": [tally.tolist() for tally in self.tally_by_epoch],
        }

    def state_dict(self):
        # loaded on the CPU when resumed; `observe` moves them back to the device
        return {
            "error_tally": self.error_tally,
            "epoch_confusion": self.epoch_confusion,
            "tally_by_epoch": self.tally_by_epoch,
        }

    def load_state_dict(self, state):
        self.error_tally, self.epoch_confusion = state["error_tally"], state["epoch_confusion"]
        self.tally_by_epoch = state["tally_by_epoch"]
