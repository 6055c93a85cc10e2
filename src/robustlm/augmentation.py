"""The augmentation stage of the data-augmentation defenses (SSMBA, back-translation): each shard augments
every `shards`-th example of the run's training subsample; the gathered training file holds the subsample
(`augmentation` "original") and every augmentation, each with the example it came from (`source_id`)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from . import datasets
from .datasets.base import COLUMNS, TEXT_PAIR, coverage_gaps, has_pairs
from .defenses import AugmentationContext, build_defense
from .jsonl_checkpoint import fingerprint, resumed
from .logs import progress

AUGMENTED_COLUMNS = [*COLUMNS, "source_id", "augmentation"]
ORIGINAL = "original"
CHECKPOINT_BATCHES = 4  # batches augmented between checkpoint writes: at most what a killed job redoes


class AugmentationError(ValueError):
    pass


def augmented_columns(pairs: bool) -> list[str]:
    return [*AUGMENTED_COLUMNS, TEXT_PAIR] if pairs else AUGMENTED_COLUMNS


def training_subsample(data_path: Path, params: dict) -> pd.DataFrame:
    return datasets.select(datasets.read_split(data_path, "train"), params["train_size"], params["data_seed"])


def augment_shard(
    params: dict, data_path: Path, shard: int, shards: int, mirror: Path | None, device: torch.device, checkpoint: Path
) -> tuple[pd.DataFrame, dict]:
    """Augmentations of one shard of the training subsample, and a report of how they were made.

    The shard is augmented in fixed chunks of CHECKPOINT_BATCHES batches, each example's augmentations
    appended to `checkpoint` once its chunk is done: a killed job resumes from the last finished chunk, and,
    the chunks and every example's randomness being the same, ends with what an uninterrupted job makes."""
    started = time.perf_counter()
    examples = training_subsample(data_path, params).iloc[shard::shards]
    defense = build_defense(params["method"], params["defense_params"])
    if not defense.augments_data:
        raise AugmentationError(f"defense '{params['defense']}' does not augment data")
    context = AugmentationContext(
        mirror=mirror,
        max_length=params["max_length"],
        device=device,
        batch_size=params["batch_size"],
        seed=params["seed"],
    )
    chunk_size = CHECKPOINT_BATCHES * params["batch_size"]
    pairs = has_pairs(examples)
    key = fingerprint(
        params, examples.id.tolist(), examples.text.tolist(), *([examples[TEXT_PAIR].tolist()] if pairs else [])
    )
    with (
        resumed(checkpoint, key) as (done, finish),
        progress(desc=f"augmented ({params['defense']})", total=len(examples), unit="example") as bar,
    ):
        resumed_examples = len(done)
        for start in range(0, len(examples), chunk_size):
            chunk = examples.iloc[start : start + chunk_size]
            pending = chunk[~chunk.id.isin(done)]
            if len(pending):
                augmented = defense.augment(
                    pending.text.tolist(), pending.id.tolist(), context, pending[TEXT_PAIR].tolist() if pairs else None
                )
                for example_id, texts in zip(pending.id, augmented):
                    finish({"id": example_id, "augmentations": texts})
            bar.update(len(chunk))
    # of a pair, (premise, hypothesis), which the checkpoint's JSON holds as a list
    rows = [
        (
            f"{example.id}#{params['defense']}{k}",
            augmentation[0] if pairs else augmentation,
            example.label,
            "train",
            example.id,
            params["defense"],
            *([augmentation[1]] if pairs else []),
        )
        for example in examples.itertuples()
        for k, augmentation in enumerate(done[example.id]["augmentations"])
    ]
    report = {
        "source_ids": examples.id.tolist(),
        "resumed_examples": resumed_examples,
        "method": defense.describe_augmentation(context),
        "seconds": time.perf_counter() - started,
        "device": str(device),
    }
    return pd.DataFrame(rows, columns=augmented_columns(pairs)), report


def gather_shards(
    frames: list[pd.DataFrame], reports: list[dict], params: dict, data_path: Path
) -> tuple[pd.DataFrame, dict]:
    """One augmented training file; every example of the subsample must have been augmented by exactly one shard."""
    train = training_subsample(data_path, params)
    attempted = pd.Series([source for report in reports for source in report["source_ids"]])
    gaps = coverage_gaps(attempted, train.id, "training set")
    if gaps:
        raise AugmentationError(f"augmentation shards do not cover the training set exactly once: {gaps}")
    originals = train.assign(source_id=train.id, augmentation=ORIGINAL)
    augmentations = pd.concat(frames, ignore_index=True).sort_values("id", kind="stable")
    frame = pd.concat([originals[augmented_columns(has_pairs(train))], augmentations], ignore_index=True)
    manifest = {
        "dataset": params["dataset"],
        "defense": params["defense"],
        "settings": params,
        "method": reports[0]["method"],
        "training_examples": len(train),
        "augmentations": len(augmentations),
        "examples_without_augmentation": int(len(train) - augmentations.source_id.nunique()),
        "shards": len(reports),
        "augmentation_seconds": sum(report["seconds"] for report in reports),
        "device": reports[0]["device"],
    }
    return frame, manifest
