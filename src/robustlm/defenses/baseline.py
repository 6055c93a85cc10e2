from __future__ import annotations

from .base import Defense, clean_loss


class Baseline(Defense):
    """Plain fine-tuning with cross-entropy (the paper's BERT row)."""

    name = "baseline"

    def loss(self, model, batch):
        return clean_loss(model, batch)
