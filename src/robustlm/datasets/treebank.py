"""The Penn Treebank WSJ sample (nltk's 3,914 sentences with gold POS tags), the data of the neuron analysis:
one row per sentence (`id`, `words`, `tags`, `split`) with a seeded sentence-level train/validation/test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..resources import use_nltk_data
from ..sources import TREEBANK, DataSourceError, provenance

SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
EMPTY_ELEMENT = "-NONE-"  # traces and null elements of the annotation, not words of the sentence


def prepare_treebank(mirror: Path | None, seed: int) -> tuple[pd.DataFrame, dict]:
    """Every tagged sentence (`id`, `words`, `tags`, `split`) and a manifest of where they came from."""
    corpus = TREEBANK.locate(mirror)  # <root>/nltk_data/corpora/treebank.zip
    use_nltk_data(corpus.parents[1])
    from nltk.corpus import treebank

    rows = []
    for fileid in treebank.fileids():
        for number, sentence in enumerate(treebank.tagged_sents(fileid)):
            words = [(word, tag) for word, tag in sentence if tag != EMPTY_ELEMENT]
            if words:
                rows.append((f"{fileid}/{number}", [w for w, _ in words], [t for _, t in words]))
    if not rows:
        raise DataSourceError(f"the treebank corpus read from {corpus} has no tagged sentences")
    frame = pd.DataFrame(rows, columns=["id", "words", "tags"]).sort_values("id", kind="stable", ignore_index=True)
    order = np.random.default_rng(seed).permutation(len(frame))
    bounds = np.cumsum([round(fraction * len(frame)) for fraction in SPLIT_FRACTIONS.values()])[:-1]
    frame["split"] = ""
    for split, members in zip(SPLIT_FRACTIONS, np.split(order, bounds)):
        frame.loc[members, "split"] = split
    counts = {
        split: {
            "sentences": int((frame.split == split).sum()),
            "words": int(frame.words[frame.split == split].map(len).sum()),
        }
        for split in SPLIT_FRACTIONS
    }
    manifest = {
        "dataset": "treebank",
        "source": provenance((TREEBANK,), mirror),
        "split_seed": seed,
        "splits": counts,
        "tags": tag_set(frame),
    }
    return frame, manifest


def tag_set(frame: pd.DataFrame) -> list[str]:
    return sorted({tag for tags in frame.tags for tag in tags})


def read_treebank(path: str | Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for truncated or foreign files
        raise DataSourceError(f"cannot read {path} ({exc}); delete it and rerun its prepare_treebank job") from exc
    frame["words"], frame["tags"] = frame.words.map(list), frame.tags.map(list)
    return frame


def split_sentences(frame: pd.DataFrame, split: str, size: int | None, seed: int) -> pd.DataFrame:
    from . import select

    return select(frame[frame.split == split], size, seed)
