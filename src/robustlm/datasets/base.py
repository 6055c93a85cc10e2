"""What every dataset provides: canonical splits (`id`, `text`, `label`, `split`) read from its published source
files, verified, in the air-gapped mirror or the download cache."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ..sources import DataSourceError, PublishedFile, provenance
from .hub import HubDatasetFile

COLUMNS = ["id", "text", "label", "split"]
#: the second text of a sentence-pair task (NLI's hypothesis; `text` is the premise), a column only pair datasets have
TEXT_PAIR = "text_pair"
#: the two texts of a pair as TextAttack names them (its recipes keep the premise unchanged)
PAIR_NAMES = ("premise", "hypothesis")


def has_pairs(frame: pd.DataFrame) -> bool:
    return TEXT_PAIR in frame.columns


#: the class names of the sentiment datasets, in label order
POLARITY = ("negative", "positive")


def decode_utf8(raw: bytes, source: str) -> str:
    """`raw` as text; bytes that are not UTF-8 are an error naming `source` and the line they are on."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataSourceError(f"{source} is not UTF-8 at line {line} ({exc.reason})") from exc


def read_textfooler_sample(path: Path, id_prefix: str, split: str, classes: int = 2) -> pd.DataFrame:
    """TextFooler's test samples: one `<label> <text>` per line, labels 0 to `classes` - 1 (sentiment: 0 = negative,
    1 = positive)."""
    valid = {str(label) for label in range(classes)}
    rows = []
    for line_number, line in enumerate(decode_utf8(path.read_bytes(), str(path)).splitlines()):
        label, _, text = line.partition(" ")
        if label not in valid:
            raise DataSourceError(
                f"{path}:{line_number + 1} does not start with a 0-{classes - 1} label: {line[:60]!r}"
            )
        rows.append((f"{id_prefix}/{line_number}", text.strip(), int(label), split))
    return pd.DataFrame(rows, columns=COLUMNS)


def carve_validation(train: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Relabel a seeded, source-order-independent `fraction` of `train` as `validation`."""
    ordered = train.sort_values("id", kind="stable").reset_index(drop=True)
    chosen = np.random.default_rng(seed).permutation(len(ordered))[: round(fraction * len(ordered))]
    ordered.loc[chosen, "split"] = "validation"
    return ordered


def coverage_gaps(found: pd.Series, expected: pd.Series, expected_name: str) -> str:
    """How the ids `found` (gathered from shards) fail to list each of `expected` exactly once; "" if they do not."""
    duplicated = sorted(set(found[found.duplicated()]))
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if not (duplicated or missing or unexpected):
        return ""
    return f"duplicated {duplicated[:5]}, missing {missing[:5]}, not in the {expected_name} {unexpected[:5]}"


def normalized(text: str) -> str:
    """Tokenization-insensitive key used to match the same sentence across differently tokenized copies."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


class Dataset(ABC):
    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    sources: ClassVar[tuple[PublishedFile, ...]]
    labels: ClassVar[tuple[str, ...]]  # the class names, label 0 first
    pairs: ClassVar[bool] = False  # examples are sentence pairs (`text`, `text_pair`)

    @abstractmethod
    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        """All splits from the published source files (`PublishedFile.locate(mirror)` finds and verifies them)."""

    def settings(self) -> dict:
        """What its preparation depends on besides its files (a job's params, so a change reruns it)."""
        return {}

    def local_files(self) -> list[Path]:
        """The files it reads that are no published files (a dataset of the user's own)."""
        return []

    def hub_files(self) -> list[HubDatasetFile]:
        """The files it reads from dataset repositories on the Hugging Face hub (published without checksums)."""
        return []

    def unavailable(self) -> list[str]:
        """Its local files that are missing (checked before a run, beside the published files)."""
        return [
            f"{path}: a file of dataset '{self.name}', not found" for path in self.local_files() if not path.is_file()
        ]

    def provenance(self, mirror: Path | None) -> dict:
        """Where the splits came from, for the manifest."""
        return provenance(self.sources, mirror)
