"""IMDB (Maas et al. 2011): the official aclImdb train/test, a validation split carved from train."""
from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pandas as pd

from .base import COLUMNS, Dataset, MirrorFile, carve_validation, decode_utf8, load_hub_dataset

_REVIEW = re.compile(r"aclImdb/(train|test)/(pos|neg)/(\d+_\d+)\.txt$")
_LINE_BREAK = re.compile(r"(<br\s*/?>\s*)+")


def clean_review(text: str) -> str:
    return _LINE_BREAK.sub(" ", text).strip()


class Imdb(Dataset):
    name = "imdb"
    splits = ("train", "validation", "test")
    validation_fraction = 0.1
    hub_id = "imdb"
    mirror_files = (
        MirrorFile(
            "datasets/imdb/aclImdb_labelled.tar.gz",
            "7742b240cc4309acb147dda61d94cd7ff973a1f4c070cb030778fc3ccf210c77",
            "https://ai.stanford.edu/~amaas/data/sentiment/ (aclImdb_v1.tar.gz; train/unsup may be dropped)",
        ),
    )

    def from_mirror(self, mirror: Path, seed: int) -> pd.DataFrame:
        archive = self.mirror_files[0].verified(mirror)
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

    def from_hub(self, seed: int) -> pd.DataFrame:
        hub = load_hub_dataset(self.hub_id)
        frames = [
            pd.DataFrame({
                "id": [f"imdb/{split}/{index}" for index in range(len(hub[split]))],
                "text": [clean_review(text) for text in hub[split]["text"]],
                "label": hub[split]["label"],
                "split": split,
            })
            for split in ("train", "test")
        ]
        return self._with_validation(pd.concat(frames, ignore_index=True), seed)

    def _with_validation(self, frame: pd.DataFrame, seed: int) -> pd.DataFrame:
        train = carve_validation(frame[frame.split == "train"], self.validation_fraction, seed)
        return pd.concat([train, frame[frame.split == "test"]], ignore_index=True)
