"""What every dataset provides: canonical splits (`id`, `text`, `label`, `split`) read from its published source
files, verified, in the air-gapped mirror or the download cache."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ..sources import DataSourceError, PublishedFile

COLUMNS = ["id", "text", "label", "split"]


def decode_utf8(raw: bytes, source: str) -> str:
    """`raw` as text; bytes that are not UTF-8 are an error naming `source` and the line they are on."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataSourceError(f"{source} is not UTF-8 at line {line} ({exc.reason})") from exc


def read_textfooler_sample(path: Path, id_prefix: str, split: str) -> pd.DataFrame:
    """TextFooler's test samples: one `<label> <text>` per line, labels 0 = negative, 1 = positive."""
    rows = []
    for line_number, line in enumerate(decode_utf8(path.read_bytes(), str(path)).splitlines()):
        label, _, text = line.partition(" ")
        if label not in ("0", "1"):
            raise DataSourceError(f"{path}:{line_number + 1} does not start with a 0/1 label: {line[:60]!r}")
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

    @abstractmethod
    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        """All splits from the published source files (`PublishedFile.locate(mirror)` finds and verifies them)."""
