"""A dataset of the user's own, defined in the config alone: one file per split (CSV, TSV, JSON lines or parquet), a
text and a label column, and the class names. The files are local, read where they are, or those of a dataset
repository on the Hugging Face hub (`hub`, at a `revision`), downloaded into the hub's cache, or read from a mirror
that `robustlm-mirror build` filled. Each file's SHA-256 is recorded in the manifest, so a changed file is visible in
every result built from it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..sources import DataSourceError
from .base import COLUMNS, TEXT_PAIR, Dataset, carve_validation
from .hub import HubDatasetFile

READERS = {
    ".csv": pd.read_csv,
    ".tsv": lambda path: pd.read_csv(path, sep="\t"),
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".parquet": pd.read_parquet,
}


SPLITS = ("train", "validation", "test")


class TableDataset(Dataset):
    sources = ()

    def __init__(self, name: str, source: dict):
        self.name, self.source = name, source
        self.hub, self.revision = source.get("hub"), source.get("revision", "main")
        self.files = {split: source["files"][split] for split in SPLITS if split in source["files"]}
        self.hub_by_split = {
            split: HubDatasetFile(self.hub, file, self.revision, f"the {split} file of dataset '{name}'")
            for split, file in self.files.items()
            if self.hub
        }
        # without a validation file, validation is carved out of train
        self.splits = tuple(
            split for split in SPLITS if split in self.files or split == "validation" and "train" in self.files
        )
        # one text column, or two: a sentence pair (premise and hypothesis, in that order)
        self.text_columns = [source["text"]] if isinstance(source["text"], str) else list(source["text"])
        self.pairs = len(self.text_columns) == 2
        self.label_column = source["label"]
        self.labels = tuple(source["labels"])
        self.validation_fraction = source.get("validation_fraction", 0.1)

    def settings(self) -> dict:
        return {"source": self.source}

    def local_files(self) -> list[Path]:
        return [] if self.hub else [Path(file) for file in self.files.values()]

    def hub_files(self) -> list[HubDatasetFile]:
        return list(self.hub_by_split.values())

    def provenance(self, mirror: Path | None) -> dict:
        if self.hub:
            files = {split: file.provenance(mirror) for split, file in self.hub_by_split.items()}
            where = {"kind": "hub dataset", "repository": self.hub, "revision": self.revision}
        else:
            files = {
                split: {"path": file, "sha256": hashlib.sha256(Path(file).read_bytes()).hexdigest()}
                for split, file in self.files.items()
            }
            where = {"kind": "local files"}
        return {**where, "files": files, "text_columns": self.text_columns, "label_column": self.label_column}

    def _locate(self, split: str, mirror: Path | None) -> Path:
        return self.hub_by_split[split].locate(mirror) if self.hub else Path(self.files[split])

    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        frames = {split: self._read(split, self._locate(split, mirror)) for split in self.files}
        if "train" in frames and "validation" not in frames:
            frames["train"] = carve_validation(frames["train"], self.validation_fraction, seed)
        return pd.concat(frames.values(), ignore_index=True)

    def _read(self, split: str, path: Path) -> pd.DataFrame:
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            raise DataSourceError(
                f"{path}: dataset '{self.name}' reads {', '.join(READERS)} files, not '{path.suffix}'"
            )
        try:
            table = reader(path)
        except Exception as exc:  # each reader raises its own types for a malformed file
            raise DataSourceError(f"cannot read {path} (dataset '{self.name}', {split}): {exc}") from exc
        absent = [column for column in (*self.text_columns, self.label_column) if column not in table.columns]
        if absent:
            raise DataSourceError(
                f"{path} has no column {absent} (dataset '{self.name}'); it has {list(table.columns)}"
            )
        texts = [table[column].fillna("").astype(str).str.strip() for column in self.text_columns]
        frame = pd.DataFrame(
            {
                "id": [f"{self.name}/{split}/{row}" for row in range(len(table))],
                "text": texts[0],
                "label": self._label_indices(table[self.label_column], path),
                "split": split,
            },
            columns=COLUMNS,
        )
        if self.pairs:
            frame[TEXT_PAIR] = texts[1]
        return frame

    def _label_indices(self, column: pd.Series, path: Path) -> np.ndarray:
        """The label column as class indices: it holds the class names, or their 0-based indices."""
        by_name = {name: index for index, name in enumerate(self.labels)}
        names = column.astype(str)
        if names.isin(by_name).any():
            valid, indices = names.isin(by_name), names.map(by_name)
        else:
            indices = pd.to_numeric(column, errors="coerce")
            valid = indices.notna() & (indices % 1 == 0) & indices.between(0, len(self.labels) - 1)
        if not valid.all():
            row = int(np.flatnonzero(~valid)[0])
            raise DataSourceError(
                f"{path}: label {column.iloc[row]!r} (row {row}) is none of the classes {list(self.labels)} nor an "
                f"index 0-{len(self.labels) - 1}"
            )
        return indices.to_numpy(dtype=np.int64)
