"""Defense registry. To add a defense: subclass `Defense` in its own module, register it here, and give its
hyperparameters a closed entry under `defenses` in workflow/schemas/config.schema.yaml."""
from __future__ import annotations

from .ascc import AdvBase, AdvMixout, AdvPtwd, Rift
from .base import Defense, TrainingContext
from .baseline import Baseline
from .embedding import Lds, PgdAt
from .freelb import FreeLB
from .smoothness import Smart, Tat

DEFENSES: dict[str, type[Defense]] = {cls.name: cls for cls in (
    Baseline, PgdAt, Lds, FreeLB, Smart, Tat, AdvBase, Rift, AdvPtwd, AdvMixout)}


def build_defense(name: str, params: dict) -> Defense:
    if name not in DEFENSES:
        raise KeyError(f"unknown defense '{name}'; known: {', '.join(sorted(DEFENSES))}")
    return DEFENSES[name](**params)
