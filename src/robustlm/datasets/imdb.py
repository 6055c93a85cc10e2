"""IMDB (Maas et al. 2011): the official aclImdb train/test, a validation split carved from train."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pandas as pd

from ..sources import ACL_IMDB
from .base import COLUMNS, POLARITY, Dataset, carve_validation, decode_utf8

_REVIEW = re.compile(r"aclImdb/(train|test)/(pos|neg)/(\d+_\d+)\.txt$")
_LINE_BREAK = re.compile(r"(<br\s*/?>\s*)+")


def clean_review(text: str) -> str:
    return _LINE_BREAK.sub(" ", text).strip()


class Imdb(Dataset):
    name = "imdb"
    splits = ("train", "validation", "test")
    labels = POLARITY
    validation_fraction = 0.1
    sources = (ACL_IMDB,)

    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        archive = self.sources[0].locate(mirror)
        rows = []
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                match = _REVIEW.search(member.name)
                if not match or not member.isfile():
                    continue
                split, polarity, stem = match.groups()
                text = decode_utf8(tar.extractfile(member).read(), f"{archive}:{member.name}")
                rows.append((f"imdb/{split}/{polarity}/{stem}", clean_review(text), int(polarity == "pos"), split))
        frame = pd.DataFrame(rows, columns=COLUMNS)
        return self._with_validation(frame, seed)

    def _with_validation(self, frame: pd.DataFrame, seed: int) -> pd.DataFrame:
        train = carve_validation(frame[frame.split == "train"], self.validation_fraction, seed)
        return pd.concat([train, frame[frame.split == "test"]], ignore_index=True)
