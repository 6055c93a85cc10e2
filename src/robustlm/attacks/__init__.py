"""Attack stage: TextAttack's recipes against the fine-tuned models, offline, sharded and resumable.

Every attack is a TextAttack recipe registered here by name; `offline` swaps the recipe's downloaded
resources for local ones (and records each swap), `wrapper` queries the model, `runner` runs a shard of
the attack sample with per-example checkpoints and gathers the shards into Table 2's numbers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..resources import use_nltk_data


@dataclass(frozen=True)
class Recipe:
    recipe_class: str  # in textattack.attack_recipes
    reference: str
    build_kwargs: dict = field(default_factory=dict)


#: attack name (config `attacks.recipes`, the `attack` wildcard) -> TextAttack recipe
ATTACKS = {
    "textfooler": Recipe("TextFoolerJin2019", "Jin et al. 2020"),
    "bae": Recipe("BAEGarg2019", "Garg & Ramakrishnan 2020 (BAE-R)"),
    "a2t": Recipe("A2TYoo2021", "Yoo & Qi 2021"),
    "a2t_mlm": Recipe("A2TYoo2021", "Yoo & Qi 2021 (MLM candidates)", {"mlm": True}),
    "pso": Recipe("PSOZang2020", "Zang et al. 2020"),
    "pwws": Recipe("PWWSRen2019", "Ren et al. 2019"),
    "genetic": Recipe("GeneticAlgorithmAlzantot2018", "Alzantot et al. 2018"),
    "bert_attack": Recipe("BERTAttackLi2020", "Li et al. 2020"),
}


class AttackError(ValueError):
    """An attack that cannot be built or run; the message names the attack and the problem."""


def get(name: str) -> Recipe:
    if name not in ATTACKS:
        raise AttackError(f"unknown attack '{name}'; known attacks: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


TEXTATTACK_POST_INSTALL_MARKER = "post_install_check_3"


def prepare_textattack(mirror) -> None:
    """Call before `import textattack` when reading from a mirror.

    TextAttack's first import runs `nltk.download` for its taggers and corpora; offline those come from
    the mirror's nltk_data instead, so nltk is pointed there and the post-install step marked as done.
    """
    if mirror is None:
        return
    use_nltk_data(Path(mirror) / "nltk_data")
    cache = Path(os.environ.get("TA_CACHE_DIR", Path.home() / ".cache" / "textattack"))
    cache.mkdir(parents=True, exist_ok=True)
    (cache / TEXTATTACK_POST_INSTALL_MARKER).touch()
