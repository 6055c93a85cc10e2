"""A defense is the training objective of one step: the loop calls `loss(model, batch)` and backpropagates it."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F


class Defense(ABC):
    name: ClassVar[str]

    def __init__(self, **params):
        self.params = params

    @property
    def extra_passes(self) -> int:
        """Forward+backward passes per step beyond the clean one, recorded as training cost."""
        return 0

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar loss for `batch` (input_ids, attention_mask, [token_type_ids], labels)."""


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in batch.items() if key != "labels"}


def clean_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(**model_inputs(batch)).logits
    return F.cross_entropy(logits, batch["labels"]), logits
