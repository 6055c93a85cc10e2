"""Dataset registry. To add a dataset: write a `Dataset` subclass in its own module and register it here
(and in the config schema's `datasets` / `ood_datasets`); or, without code, give its files in the config (a
`source`: `TableDataset`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .ag_news import AgNews
from .base import COLUMNS, TEXT_PAIR, Dataset, DataSourceError, has_pairs
from .imdb import Imdb
from .mr import MovieReviews
from .nli import Mnli, MnliMismatched, Snli
from .sst2 import Sst2
from .table import TableDataset
from .yelp import YelpPolarity

DATASETS: dict[str, type[Dataset]] = {
    cls.name: cls for cls in (Imdb, MovieReviews, YelpPolarity, Sst2, Snli, Mnli, MnliMismatched, AgNews)
}

__all__ = [
    "DATASETS",
    "TEXT_PAIR",
    "DataSourceError",
    "configured",
    "get",
    "has_pairs",
    "prepare",
    "read_split",
    "select",
]


def get(name: str, source: dict | None = None) -> Dataset:
    """The registered dataset `name`, or the one the config's `source` (files, columns, labels) defines."""
    if source is not None:
        return TableDataset(name, source)
    if name not in DATASETS:
        raise KeyError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]()


def configured(config: dict, name: str) -> Dataset:
    """Dataset `name` of the config's `datasets` or `ood_datasets`."""
    for group in ("datasets", "ood_datasets"):
        if name in config.get(group, {}):
            return get(name, config[group][name].get("source"))
    raise KeyError(f"dataset '{name}' is in neither `datasets` nor `ood_datasets`")


def prepare(dataset: Dataset, mirror: Path | None, seed: int) -> tuple[pd.DataFrame, dict]:
    """All canonical splits of `dataset` (`get` or `configured` gives it) and a manifest saying where they came from.

    Texts that are empty once the source's markup is cleaned are no examples (nor is a pair with an empty text):
    they are dropped (after the validation split is carved, which depends on ids only) and counted per split in
    the manifest."""
    frame = dataset.load(mirror, seed)
    frame = frame[[*COLUMNS, TEXT_PAIR] if dataset.pairs else COLUMNS].reset_index(drop=True)
    if frame.id.duplicated().any():
        raise DataSourceError(f"{dataset.name}: duplicate example ids {frame.id[frame.id.duplicated()].tolist()[:5]}")
    empty = (frame.text.str.strip() == "") | (frame[TEXT_PAIR].str.strip() == "" if dataset.pairs else False)
    skipped = frame.split[empty].value_counts()
    frame = frame[~empty].reset_index(drop=True)
    counts = {
        split: {
            "examples": int((frame.split == split).sum()),
            "per_label": {
                label: int(((frame.split == split) & (frame.label == index)).sum())
                for index, label in enumerate(dataset.labels)
            },
            "skipped_empty_texts": int(skipped.get(split, 0)),
        }
        for split in dataset.splits
    }
    return frame, {
        "dataset": dataset.name,
        "labels": list(dataset.labels),
        "pairs": dataset.pairs,
        "source": dataset.provenance(mirror),
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
