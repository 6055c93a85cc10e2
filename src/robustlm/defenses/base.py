"""A defense is the training objective of one step. The loop calls `backward(model, batch, autocast)`, which
accumulates the step's parameter gradients; most defenses only define `loss` and inherit the default."""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F

Autocast = Callable[[], AbstractContextManager]
IGNORED_LABEL = -100  # token positions without a label: sub-word continuations, special tokens, padding


@dataclass
class TrainingContext:
    """What a defense may need beyond its hyperparameters: the pre-trained model (before any update),
    its tokenizer, and the resource mirror."""

    model: torch.nn.Module
    tokenizer: object
    mirror: Path | None


class Defense(ABC):
    name: ClassVar[str]
    # whether the objective is defined per token too (POS tagging for the neuron analysis), not only per sequence
    token_level: ClassVar[bool] = True

    def __init__(self, **params):
        self.params = params

    @property
    def extra_passes(self) -> int:
        """Forward+backward passes per step beyond the clean one, recorded as training cost."""
        return 0

    def prepare(self, context: TrainingContext) -> None:
        """Called once with the pre-trained model, before training starts or resumes."""

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the defense adds (e.g. projection heads), optimised alongside the model's."""
        return []

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar loss for `batch` (input_ids, attention_mask, [token_type_ids], labels): labels are one class per
        sequence [B], or one per token [B, T] with IGNORED_LABEL where nothing is scored."""

    def backward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], autocast: Autocast) -> torch.Tensor:
        """Accumulate this step's parameter gradients; return the loss (detached) for logging."""
        with autocast():
            loss = self.loss(model, batch)
        loss.backward()
        return loss.detach()

    def on_epoch_end(self) -> None:
        """Called after every epoch (TAT updates its confusion tally here)."""

    def state_dict(self) -> dict:
        """State that must survive a resume (saved in the training checkpoints)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in batch.items() if key != "labels"}


def labelled_positions(labels: torch.Tensor) -> torch.Tensor | None:
    """Where token labels are set ([B, T] mask); None for sequence labels, where every example is scored."""
    return labels != IGNORED_LABEL if labels.dim() == 2 else None


def at(values: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Predictions (or labels) at the scored positions, flattened to [N, ...]: every loss then reads one
    row per scored sequence or token, so each defense serves both tasks with one formula."""
    return values if positions is None else values[positions]


def clean_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    positions = labelled_positions(batch["labels"])
    return F.cross_entropy(at(model(**model_inputs(batch)).logits, positions), at(batch["labels"], positions))


def embedded_inputs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Word embeddings of the batch and the remaining model inputs, for perturbing in embedding space."""
    inputs = model_inputs(batch)
    return model.get_input_embeddings()(inputs.pop("input_ids")), inputs


def padding_mask(inputs: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return inputs["attention_mask"].unsqueeze(-1).to(like.dtype)
