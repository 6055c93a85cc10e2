"""SST-2 (Socher et al. 2013) as GLUE ships it: trained on GLUE's training set (phrases and sentences) and tested on
GLUE's development set, the split TAT's Table 1 reports (GLUE's test labels are unpublished); validation is a
seeded tenth of training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..sources import MIRROR_ONLY, DataSourceError
from .base import COLUMNS, POLARITY, Dataset, carve_validation, decode_utf8

TEXT_COLUMNS = ("sentence", "content")  # the mirror's train and dev files name the text column differently


def read_glue_tsv(path: Path, id_prefix: str, split: str) -> pd.DataFrame:
    """A tab-separated file with a header naming a `label` (0 = negative, 1 = positive) and a text column."""
    lines = decode_utf8(path.read_bytes(), str(path)).splitlines()
    header = lines[0].split("\t")
    text_column = next((column for column in TEXT_COLUMNS if column in header), None)
    if "label" not in header or text_column is None:
        raise DataSourceError(f"{path}: header {header} names no `label` and {' or '.join(TEXT_COLUMNS)} column")
    label_at, text_at = header.index("label"), header.index(text_column)
    rows = []
    for line_number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header) or fields[label_at] not in ("0", "1"):
            raise DataSourceError(f"{path}:{line_number} is not a 0/1 label and a text: {line[:60]!r}")
        rows.append((f"{id_prefix}/{line_number - 2}", fields[text_at].strip(), int(fields[label_at]), split))
    return pd.DataFrame(rows, columns=COLUMNS)


class Sst2(Dataset):
    name = "sst2"
    splits = ("train", "validation", "test")
    labels = POLARITY
    validation_fraction = 0.1
    sources = (MIRROR_ONLY["datasets/sst2/train.tsv"], MIRROR_ONLY["datasets/sst2/dev.tsv"])

    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        train_file, dev_file = (source.locate(mirror) for source in self.sources)
        train = carve_validation(read_glue_tsv(train_file, "sst2/train", "train"), self.validation_fraction, seed)
        return pd.concat([train, read_glue_tsv(dev_file, "sst2/dev", "test")], ignore_index=True)
