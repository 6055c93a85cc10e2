"""MR: Pang & Lee (2005) sentence polarity. It has no official split; the 1,000-sentence test sample of
TextFooler (used by most attack papers since) is held out as test and removed from training."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from .base import (COLUMNS, Dataset, MirrorFile, carve_validation, decode_utf8, load_hub_dataset, normalized,
                   read_textfooler_sample)


class MovieReviews(Dataset):
    name = "mr"
    splits = ("train", "validation", "test")
    validation_fraction = 0.1
    hub_id = "rotten_tomatoes"
    hub_note = "hub copy uses rotten_tomatoes' own train/validation/test split, not TextFooler's test sample"
    mirror_files = (
        MirrorFile(
            "nltk_data/corpora/sentence_polarity.zip",
            "6e1ed4405b65c7eabf1d199a7f7c437091ac21da0ea7467b410a74062574566b",
            "the nltk downloader (`python -m nltk.downloader sentence_polarity`)",
        ),
        MirrorFile(
            "datasets/textfooler/mr",
            "6d36d344c14cece04ec67bcc1cef243b8c067bfd20d212345556aa67eb83eed2",
            "the TextFooler repository (data/mr)",
        ),
    )

    def from_mirror(self, mirror: Path, seed: int) -> pd.DataFrame:
        corpus, sample = (source.verified(mirror) for source in self.mirror_files)
        test = read_textfooler_sample(sample, "mr/textfooler", "test")
        rows = []
        with zipfile.ZipFile(corpus) as archive:
            for polarity, label in (("pos", 1), ("neg", 0)):
                # rt-polarity v1.0 is Latin-1; NLTK's copy was converted to UTF-8 (its README.txt)
                member = f"sentence_polarity/rt-polarity.{polarity}"
                lines = decode_utf8(archive.read(member), f"{corpus}:{member}").splitlines()
                rows += [(f"mr/{polarity}/{n}", line.strip(), label, "train") for n, line in enumerate(lines)]
        pool = pd.DataFrame(rows, columns=COLUMNS)
        held_out = set(test.text.map(normalized)) - {""}  # a text without letters or digits is no sentence to match
        pool = pool[~pool.text.map(normalized).isin(held_out)]
        train = carve_validation(pool, self.validation_fraction, seed)
        return pd.concat([train, test], ignore_index=True)

    def from_hub(self, seed: int) -> pd.DataFrame:
        hub = load_hub_dataset(self.hub_id)
        return pd.concat(
            [
                pd.DataFrame({
                    "id": [f"mr/{split}/{index}" for index in range(len(hub[split]))],
                    "text": hub[split]["text"],
                    "label": hub[split]["label"],
                    "split": split,
                })
                for split in self.splits
            ],
            ignore_index=True,
        )
