"""What a perturbation did to the model, measured on the training batches of the steps the loop marks (an epoch's
last ones): whether the ascent found a delta that changes the prediction more than a random one of the same size,
whether it moved away from its random start, in direction and in its objective, and how much delta changes the
logits.

Each measurement runs five extra forward passes without gradients, in eval mode (dropout would otherwise make two
passes differ even without delta), in the arithmetic of the step itself: at delta = 0, at the ascent's delta, at its
random start, and at a random delta r of the same size in the defense's norm and at -r. The pair estimates the
objective at a random delta without r's first-order term, whose sign is a coin flip that would otherwise swamp the
small second-order change a random delta makes. Random deltas come from the monitor's own generator, so measuring
does not change the training run. Sums stay on the device until the report: the only host synchronisations are the
two per measured step that time the measurement, which the training loop leaves out of the fine-tuning time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .base import at, eval_mode
from .geometry import perturbation_sizes, random_like

if TYPE_CHECKING:
    from .embedding import Perturbation

Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
MEASURED = (
    "mean_delta_norm",
    "clean_loss",
    "adversarial_loss",
    "start_loss",
    "random_delta_loss",
    "mean_abs_logit_change",
    "start_cosine",
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PerturbationMonitor:
    def __init__(self, norm: str, epsilon: float | None):
        self.norm, self.epsilon = norm, epsilon
        self.generator: torch.Generator | None = None
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.precision, self.seconds = 0, None, 0.0

    @torch.no_grad()
    def record(self, model, perturbation: Perturbation, objective: Objective) -> None:
        """Add one step's measurements. `objective(perturbed_logits, clean_logits, labels)` is the ascent's, summed
        over the scored rows."""
        p = perturbation
        synchronize(p.delta.device)
        started = time.perf_counter()
        if self.generator is None or self.generator.device != p.delta.device:
            self.generator = torch.Generator(device=p.delta.device).manual_seed(0)
        device_type = p.delta.device.type
        self.precision = (
            str(torch.get_autocast_dtype(device_type)).removeprefix("torch.")
            if torch.is_autocast_enabled(device_type)
            else "float32"
        )
        embeddings = p.embeddings.detach()

        def logits(delta):  # in float64 from here on: the objectives' differences can be below float32's resolution
            return at(model(inputs_embeds=embeddings + delta, **p.inputs).logits, p.positions).double()

        random_delta = random_like(p.delta, self.norm, self.generator)
        with eval_mode(model):
            clean, perturbed, start = logits(torch.zeros_like(p.delta)), logits(p.delta), logits(p.start)
            antithetic = logits(random_delta), logits(-random_delta)
        rows = len(clean)
        token_mask = p.inputs["attention_mask"]
        values = {
            "mean_delta_norm": perturbation_sizes(p.delta, self.norm, token_mask).mean(),
            "clean_loss": objective(clean, clean, p.ascent_labels) / rows,
            "adversarial_loss": objective(perturbed, clean, p.ascent_labels) / rows,
            "start_loss": objective(start, clean, p.ascent_labels) / rows,
            "random_delta_loss": sum(objective(side, clean, p.ascent_labels) for side in antithetic) / (2 * rows),
            "mean_abs_logit_change": (perturbed - clean).abs().mean(),
            "start_cosine": F.cosine_similarity(p.delta.flatten(1).float(), p.start.flatten(1).float(), dim=1).mean(),
        }
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0) + value.double()
        self.steps += 1
        synchronize(p.delta.device)
        self.seconds += time.perf_counter() - started

    def report(self) -> dict | None:
        """Averages over the steps recorded since the last report (None if there were none), then start afresh.

        `ascent_gain` = (adversarial - clean) / |random - clean|: how many times more the ascent's delta raises its
        objective than a random delta of the same size changes it (about 1: the ascent found nothing a random draw
        would not; negative: it lowered its objective). `start_share` = (start - clean) / (adversarial - clean): how
        much of the objective's rise at delta was there at the ascent's random start already (about 1: the ascent
        stayed where it began; about 0: the steps made the rise)."""
        if not self.steps:
            return None
        means = {name: float(self.sums[name]) / self.steps for name in MEASURED}  # the one host read
        gained, random_gain, start_gain = (
            means[f"{point}_loss"] - means["clean_loss"] for point in ("adversarial", "random_delta", "start")
        )
        report = {
            "norm": self.norm,
            "epsilon": self.epsilon,
            "precision": self.precision,
            "steps_measured": self.steps,
            **means,
            "ascent_gain": gained / abs(random_gain) if random_gain != 0 else None,
            "start_share": start_gain / gained if gained != 0 else None,
            "measurement_seconds": self.seconds,
        }
        self._reset()
        return report
