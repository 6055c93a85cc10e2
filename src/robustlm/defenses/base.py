"""A defense is the training objective of one step. The loop calls `backward(model, batch, autocast)`, which
accumulates the step's parameter gradients; most defenses only define `loss` and inherit the default.

Two families also change the data: data augmentation (`augments_data`: `rule augment` calls `augment` once,
before training) and input-space adversarial training (`extra_training_examples`, called before every epoch)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..sources import PublishedFile

Autocast = Callable[[], AbstractContextManager]
IGNORED_LABEL = -100  # token positions without a label: sub-word continuations, special tokens, padding


@dataclass
class TrainingContext:
    """What a defense may need beyond its hyperparameters: the pre-trained model (before any update), its
    tokenizer, the resource mirror, the raw training set (input-space attacks perturb its texts; None for
    pre-tokenized tasks), and a directory for resumable intermediate state, deleted with the checkpoints, with
    the run's settings (`run_key`) to tell that state from an earlier run's."""

    model: torch.nn.Module
    tokenizer: object
    mirror: Path | None
    train_texts: list[str] | None = None
    train_text_pairs: list[str] | None = None  # the hypotheses of a sentence-pair task (`train_texts`: premises)
    train_labels: list | None = None
    max_length: int = 512
    device: torch.device = torch.device("cpu")
    seed: int = 0
    work_dir: Path | None = None
    run_key: str = ""


@dataclass
class AugmentationContext:
    """What `augment` may need: the resource mirror, the training truncation, a device, and a batch size."""

    mirror: Path | None
    max_length: int
    device: torch.device
    batch_size: int
    seed: int


class Defense(ABC):
    name: ClassVar[str]
    # whether the objective is defined per token too (POS tagging for the neuron analysis), not only per sequence
    token_level: ClassVar[bool] = True
    # whether training reads an augmented copy of the training set made beforehand by `augment`
    augments_data: ClassVar[bool] = False
    # set by the training loop on the steps whose perturbation is measured (an epoch's last ones)
    measuring: bool = False

    def __init__(self, **params):
        self.params = params

    @property
    def extra_passes(self) -> int:
        """Forward+backward passes per step beyond the clean one, recorded as training cost."""
        return 0

    @classmethod
    def makes_training_data(cls) -> bool:
        """Whether the defense's cost lies in making training data (augmentation before training, adversarial
        examples before epochs) while its optimizer step costs what the baseline's does."""
        return cls.augments_data or cls.extra_training_examples is not Defense.extra_training_examples

    def needed_models(self) -> list[str]:
        """Models the defense loads besides the one it trains (hub ids, mirror names or directories)."""
        return []

    def needed_files(self, mirror: bool) -> list[PublishedFile]:
        """Published files the defense reads (`mirror`: whether the run reads from a mirror)."""
        return []

    def needed_attacks(self) -> list[str]:
        """Attacks (robustlm.attacks.ATTACKS) the defense runs while it trains."""
        return []

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

    def augment(
        self,
        texts: list[str],
        example_ids: list[str],
        context: AugmentationContext,
        text_pairs: list[str] | None = None,
    ) -> list[list]:
        """New training texts made from each of `texts` (same label), for defenses that `augments_data`; of sentence
        pairs (`texts` the premises, `text_pairs` the hypotheses), new (premise, hypothesis) pairs."""
        raise NotImplementedError(f"defense '{self.name}' does not augment data")

    def planned_extra_examples(self, epoch: int, train_size: int) -> int:
        """How many examples `extra_training_examples` aims to add in `epoch` (sizes the LR schedule)."""
        return 0

    def extra_training_examples(self, epoch: int, model: torch.nn.Module) -> tuple[list, list]:
        """Texts (or (premise, hypothesis) pairs) and labels trained on in `epoch` besides the training set, batched
        with it; the loop marks them `batch["adversarial"]` (input-space adversarial training generates them against
        the current model)."""
        return [], []

    def selectable(self, epoch: int) -> bool:
        """Whether the model after `epoch` may be kept as the run's best-validation model."""
        return True

    def report(self) -> dict:
        """What the defense did beyond the loss (e.g. adversarial examples generated), kept in the run's metrics."""
        return {}

    def perturbation_report(self) -> dict | None:
        """For defenses that perturb the embeddings: what their perturbation did on the steps measured since the last
        report (diagnostics.PerturbationMonitor); None for the others."""
        return None

    def on_epoch_end(self) -> None:
        """Called after every epoch (TAT updates its confusion tally here)."""

    def state_dict(self) -> dict:
        """State that must survive a resume (saved in the training checkpoints)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in batch.items() if key not in ("labels", "adversarial")}


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


@contextmanager
def eval_mode(model: torch.nn.Module):
    """The model in eval mode (no dropout) inside the block, back in its own mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
