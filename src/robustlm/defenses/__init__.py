"""Defense registry. To add a defense: subclass `Defense` in its own module, register it here, and give its
hyperparameters a closed entry under `defenses` in workflow/schemas/config.schema.yaml."""

from __future__ import annotations

from .ascc import AdvBase, AdvMixout, AdvPtwd, Rift
from .back_translation import BackTranslation
from .base import AugmentationContext as AugmentationContext
from .base import Defense
from .base import TrainingContext as TrainingContext
from .baseline import Baseline
from .embedding import Lds, PgdAt
from .freelb import FreeLB
from .input_space import A2T, A2TMlm, BertAttackTraining
from .smoothness import Smart, Tat
from .ssmba import Ssmba

DEFENSES: dict[str, type[Defense]] = {
    cls.name: cls
    for cls in (
        Baseline,
        Ssmba,
        BackTranslation,
        A2T,
        A2TMlm,
        BertAttackTraining,
        PgdAt,
        Lds,
        FreeLB,
        Smart,
        Tat,
        AdvBase,
        Rift,
        AdvPtwd,
        AdvMixout,
    )
}


def build_defense(name: str, params: dict) -> Defense:
    if name not in DEFENSES:
        raise KeyError(f"unknown defense '{name}'; known: {', '.join(sorted(DEFENSES))}")
    return DEFENSES[name](**params)
