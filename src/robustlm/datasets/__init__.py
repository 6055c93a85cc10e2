"""Dataset registry. To add a dataset: write a `Dataset` subclass in its own module and register it here
(and in the config schema's `datasets` / `ood_datasets`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..sources import provenance
from .base import COLUMNS, Dataset, DataSourceError
from .imdb import Imdb
from .mr import MovieReviews
from .yelp import YelpPolarity

DATASETS: dict[str, type[Dataset]] = {cls.name: cls for cls in (Imdb, MovieReviews, YelpPolarity)}

__all__ = ["DATASETS", "DataSourceError", "prepare", "read_split", "select"]


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]()


def prepare(name: str, mirror: Path | None, seed: int) -> tuple[pd.DataFrame, dict]:
    """All canonical splits of dataset `name` and a manifest saying where they came from.

    Texts that are empty once the source's markup is cleaned are no examples: they are dropped (after the
    validation split is carved, which depends on ids only) and counted per split in the manifest."""
    dataset = get(name)
    frame = dataset.load(mirror, seed)
    frame = frame[COLUMNS].reset_index(drop=True)
    if frame.id.duplicated().any():
        raise DataSourceError(f"{name}: duplicate example ids {frame.id[frame.id.duplicated()].tolist()[:5]}")
    empty = frame.text.str.strip() == ""
    skipped = frame.split[empty].value_counts()
    frame = frame[~empty].reset_index(drop=True)
    counts = {
        split: {
            "examples": int((frame.split == split).sum()),
            "positive": int(((frame.split == split) & (frame.label == 1)).sum()),
            "skipped_empty_texts": int(skipped.get(split, 0)),
        }
        for split in dataset.splits
    }
    return frame, {
        "dataset": name,
        "source": provenance(dataset.sources, mirror),
        "validation_seed": seed,
        "splits": counts,
    }


def read_split(path: str | Path, split: str) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for truncated or foreign files
        raise DataSourceError(f"cannot read {path} ({exc}); delete it and rerun its prepare_data job") from exc
    subset = frame[frame.split == split]
    if subset.empty:
        raise DataSourceError(f"{path} has no '{split}' split (it has: {sorted(frame.split.unique())})")
    return subset.reset_index(drop=True)


def select(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """A seeded subsample independent of row order, so every model sees the same examples."""
    ordered = frame.sort_values("id", kind="stable").reset_index(drop=True)
    if size is None or size >= len(ordered):
        return ordered
    return ordered.sample(n=size, random_state=seed).sort_values("id", kind="stable").reset_index(drop=True)
