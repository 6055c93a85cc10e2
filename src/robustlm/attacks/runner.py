"""The attack protocol of A2T (which the main paper follows): one fixed random sample of test examples,
the same for every model, attacked with a per-example query budget; run in shards with a per-example
checkpoint and gathered into the adversarial examples and a per-model summary.

The protocol keeps only the examples every compared model classifies correctly. That restriction is
applied when Table 2 is assembled (a model's misclassified examples come back as "skipped"), so that the
sample, and every other model's attacks, do not depend on any one model: retraining one defense reruns
only its own attacks."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..datasets.base import PAIR_NAMES, TEXT_PAIR, coverage_gaps
from ..evaluation import computes_in_bf16
from ..jsonl_checkpoint import resumed
from ..logs import progress
from ..models import check_model_dir, load_classifier, load_tokenizer
from . import AttackError, get, prepare_textattack

log = logging.getLogger(__name__)


def load_attack(name: str, params: dict, model_dir: Path, mirror: Path | None, device: torch.device):
    """The attack `name` against the fine-tuned model in `model_dir`, with the query budget and batching of
    `params`; returns the TextAttack `Attack` and the substitutions made to build it offline."""
    check_model_dir(model_dir)
    return build_attack_on(
        name, params, load_classifier(str(model_dir)), load_tokenizer(str(model_dir)), mirror, device
    )


def build_attack_on(name: str, params: dict, model, tokenizer, mirror: Path | None, device: torch.device):
    """The attack `name` against `model` as it is (input-space adversarial training attacks the model being
    trained); `params` holds the query budget, batching, truncation, precision and the resources of `attacks`."""
    prepare_textattack(mirror, name)
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)  # a progress bar per encode call otherwise
    from .offline import AttackResources, build_attack
    from .wrapper import ClassifierWrapper

    recipe = get(name)
    wrapper = ClassifierWrapper(
        model, tokenizer, params["max_length"], params["query_batch_size"], device, params["precision"]
    )
    attack_resources = AttackResources.configured(params["sentence_encoder"], params["masked_lm"], mirror)
    attack, substitutions = build_attack(name, recipe, wrapper, attack_resources)
    keep_premises(attack)
    for setting, value in params.get("search", {}).items():  # pop_size, max_iters of a population search
        setattr(attack.search_method, setting, value)
    count_generations(attack.search_method)
    attack.goal_function.query_budget = params["query_budget"]
    attack.goal_function.batch_size = params["query_batch_size"]
    return attack, substitutions + precision_substitutions(name, params["precision"], device)


def keep_premises(attack) -> None:
    """On sentence pairs every attack perturbs the hypothesis only, as TextFooler, RIFT and the recipes that say so
    (TextFooler, A2T, PSO, Genetic); PWWS, BAE and BERT-Attack's recipes do not, so the constraint is added."""
    from textattack.constraints.pre_transformation import InputColumnModification

    if not any(isinstance(c, InputColumnModification) for c in attack.pre_transformation_constraints):
        attack.pre_transformation_constraints.append(InputColumnModification(list(PAIR_NAMES), {PAIR_NAMES[0]}))


def count_generations(search) -> None:
    """Make a population search (Genetic, PSO) count the generations it runs on each example, in
    `search.generations_run`: TextAttack does not report them, and whether a search reaches its `max_iters` or
    stops at a success or the query budget first says whether that setting acts (RIFT runs 40, not 20)."""
    from textattack.search_methods import GeneticAlgorithm, ParticleSwarmOptimization

    if not isinstance(search, (GeneticAlgorithm, ParticleSwarmOptimization)):
        return
    perform_search, crossovers = search.perform_search, 0
    search.generations_run = 0

    def counted_search(initial_result):
        nonlocal crossovers
        search.generations_run = crossovers = 0
        return perform_search(initial_result)

    search.perform_search = counted_search
    if isinstance(search, ParticleSwarmOptimization):  # which computes its inertia once per iteration i
        compute_omega = search._compute_omega

        def counted_omega(iteration, population):
            search.generations_run = iteration + 1
            return compute_omega(iteration, population)

        search._compute_omega = counted_omega
    else:  # which breeds each generation's pop_size - 1 children by crossover, stopping only when the search ends
        crossover = search._crossover

        def counted_crossover(*args):
            nonlocal crossovers
            crossovers += 1
            search.generations_run = -(-crossovers // (search.pop_size - 1))
            return crossover(*args)

        search._crossover = counted_crossover


def population_search(attack) -> dict | None:
    """A population search's settings as the attack runs them (None for a greedy search)."""
    search = attack.search_method
    if not hasattr(search, "generations_run"):
        return None
    return {
        "method": type(search).__name__,
        "pop_size": search.pop_size,
        "max_iters": search.max_iters,
        "query_budget": attack.goal_function.query_budget,
    }


def attack_input(example) -> str | OrderedDict:
    """What TextAttack attacks: the text, or a sentence pair as its named columns."""
    if hasattr(example, TEXT_PAIR):
        return OrderedDict(zip(PAIR_NAMES, (example.text, getattr(example, TEXT_PAIR))))
    return example.text


def precision_substitutions(name: str, precision: str, device: torch.device) -> list[dict]:
    """bf16 queries recorded like a substituted resource (TextAttack's are fp32; CPUs compute fp32 either way),
    so that Table 2 says which numbers they are behind."""
    from .offline import Substitution

    if not computes_in_bf16(device, precision):
        return []
    return [
        asdict(
            Substitution(
                name,
                "model queries",
                "float32 forward passes",
                "victim queried under bf16 autocast (some adversarial examples differ from fp32's)",
            )
        )
    ]


def seed_example(seed: int, example_id: str) -> None:
    """Seeds that depend only on the example, so a shard's results do not depend on how examples are sharded."""
    value = int.from_bytes(hashlib.sha256(f"{seed}:{example_id}".encode()).digest()[:4], "little")
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def describe(result, example, seconds: float, generations: int | None) -> dict:
    """One attacked example, in the columns of the adversarial-examples table (`generations`: those a population
    search ran on it)."""
    original, perturbed = result.original_result, result.perturbed_result
    changed = sorted(original.attacked_text.all_words_diff(perturbed.attacked_text))
    outcome = type(result).__name__.removesuffix("AttackResult").lower()
    # of a sentence pair, the hypothesis (the premise, never perturbed, is in the attack sample)
    texts = [original.attacked_text.text, perturbed.attacked_text.text]
    attacked_words = len(original.attacked_text.words)
    if len(original.attacked_text.column_labels) > 1:
        from textattack.shared import AttackedText

        texts = [attacked.attacked_text.tokenizer_input[-1] for attacked in (original, perturbed)]
        attacked_words -= len(AttackedText(original.attacked_text.tokenizer_input[0]).words)
    return {
        "id": example.id,
        "label": int(example.label),
        "result": outcome,
        "original_text": texts[0],
        "perturbed_text": texts[1],
        "original_output": int(original.output),
        "perturbed_output": int(perturbed.output),
        "queries": int(perturbed.num_queries),
        "changed_word_indices": changed,
        "perturbed_word_percent": 100.0 * len(changed) / max(1, attacked_words),
        "search_generations": None if outcome == "skipped" else generations,  # a skipped example is not searched
        "seconds": seconds,
    }


def model_fingerprint(model_dir: Path) -> str:
    """Weights and config, so a checkpoint of an attack on an older model is never reused."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def run_shard(
    attack, sample: pd.DataFrame, shard: int, shards: int, seed: int, checkpoint: Path, key: str
) -> list[dict]:
    """Attack every `shards`-th example of the sample starting at `shard` (resumable through `checkpoint`)."""
    return attack_examples(attack, sample.iloc[shard::shards], seed, checkpoint, key)


def attack_examples(
    attack, examples: pd.DataFrame, seed: int, checkpoint: Path, key: str, enough_successes: int | None = None
) -> list[dict]:
    """Attack `examples` (id, text, [text_pair,] label) in order, appending each result to `checkpoint` as it finishes so
    that a killed job resumes where it stopped; stop early once `enough_successes` attacks have succeeded."""
    successes, failures, attacked = 0, 0, []
    with (
        resumed(checkpoint, key) as (done, finish),
        progress(desc="attacked", total=len(examples), unit="example") as bar,
    ):
        for example in examples.itertuples():
            if enough_successes is not None and successes >= enough_successes:
                break
            attacked.append(example.id)
            if example.id not in done:
                seed_example(seed, example.id)
                started = time.perf_counter()
                result = attack.attack(attack_input(example), int(example.label))
                generations = getattr(attack.search_method, "generations_run", None)
                finish(describe(result, example, time.perf_counter() - started, generations))
            successes += done[example.id]["result"] == "successful"
            failures += done[example.id]["result"] == "failed"
            wanted = f" of {enough_successes} wanted" if enough_successes is not None else ""
            asr = f", ASR {100 * successes / (successes + failures):.0f}%" if successes + failures else ""
            bar.set_postfix_str(f"{successes} successful{wanted}{asr}", refresh=False)
            bar.update()
    return [done[example_id] for example_id in attacked]


def gather(shards: list[dict], sample: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Concatenate shard outputs in sample order, checking that every sampled example is there exactly once;
    returns the adversarial examples and the attack summary."""
    rows = pd.DataFrame([row for shard in shards for row in shard["examples"]])
    if rows.empty:
        rows = pd.DataFrame(
            columns=["id", "result", "queries", "perturbed_word_percent", "search_generations", "seconds"]
        )
    gaps = coverage_gaps(rows.id, sample.id, "sample")
    if gaps:
        raise AttackError(f"shards do not cover the attack sample exactly once: {gaps}")
    substitutions = shards[0]["substitutions"]
    if any(shard["substitutions"] != substitutions for shard in shards):
        raise AttackError("shards were built with different resource substitutions; rerun them with one setting")
    rows = rows.set_index("id").loc[sample.id].reset_index()
    counts = rows.result.value_counts()
    successful, failed, skipped = (int(counts.get(kind, 0)) for kind in ("successful", "failed", "skipped"))
    attacked = rows[rows.result != "skipped"]
    total = len(rows)
    summary = {
        "examples": total,
        "successful": successful,
        "failed": failed,
        "skipped": skipped,
        "original_accuracy": 100.0 * (total - skipped) / total if total else None,
        "accuracy_under_attack": 100.0 * failed / total if total else None,
        "attack_success_rate": 100.0 * successful / (successful + failed) if successful + failed else None,
        "average_queries": float(attacked.queries.mean()) if len(attacked) else None,
        "average_perturbed_word_percent": (
            float(rows.perturbed_word_percent[rows.result == "successful"].mean()) if successful else None
        ),
        "attack_seconds": float(rows.seconds.sum()),
        "substitutions": substitutions,
        "search": search_diagnostic(shards[0]["search"], attacked),
    }
    return rows, summary


def search_diagnostic(search: dict | None, attacked: pd.DataFrame) -> dict | None:
    """How far a population search went on the attacked examples: the generations it ran, how many searches reached
    `max_iters`, and how many failed ones the query budget ended first (a `max_iters` that no search reaches does
    not act). None for a greedy search."""
    if search is None:
        return None
    generations, failed = attacked.search_generations, attacked.result == "failed"
    return {
        **search,
        "generations_median": float(generations.median()) if len(attacked) else None,
        "generations_max": int(generations.max()) if len(attacked) else None,
        "reached_max_iters": int((generations >= search["max_iters"]).sum()),
        "failed": int(failed.sum()),
        "failed_at_query_budget": int((failed & (attacked.queries >= search["query_budget"])).sum()),
    }
