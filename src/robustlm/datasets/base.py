"""What every dataset provides: canonical splits (`id`, `text`, `label`, `split`) from the air-gapped
mirror or from the public hubs, with verified source files."""
from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

COLUMNS = ["id", "text", "label", "split"]


class DataSourceError(RuntimeError):
    """A source file is missing, does not match its published checksum, or does not read as its format says."""


@dataclass(frozen=True)
class MirrorFile:
    relative_path: str
    sha256: str
    obtain: str

    def verified(self, mirror: Path) -> Path:
        path = mirror / self.relative_path
        if not path.is_file():
            raise DataSourceError(
                f"missing data file {path} (expected at <mirror>/{self.relative_path}, sha256 {self.sha256}). "
                f"Obtain it from {self.obtain}, or unset the mirror to download from the hub."
            )
        digest = sha256_of(path)
        if digest != self.sha256:
            raise DataSourceError(
                f"corrupt data file {path}: sha256 is {digest}, expected {self.sha256}. "
                f"Replace it with a fresh copy from {self.obtain}."
            )
        return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    mirror_files: ClassVar[tuple[MirrorFile, ...]]
    hub_id: ClassVar[str]
    hub_note: ClassVar[str] = ""  # how the hub copy differs from the mirror's, recorded in the manifest

    @abstractmethod
    def from_mirror(self, mirror: Path, seed: int) -> pd.DataFrame:
        """All splits from the mirror's upstream files (verify them with MirrorFile.verified)."""

    @abstractmethod
    def from_hub(self, seed: int) -> pd.DataFrame:
        """All splits from the Hugging Face hub (network needed)."""


def load_hub_dataset(hub_id: str):
    import datasets  # imported lazily: only the online path needs it

    return datasets.load_dataset(hub_id)
