"""MR: Pang & Lee (2005) sentence polarity. It has no official split; the 1,000-sentence test sample of
TextFooler (used by most attack papers since) is held out as test and removed from training."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from ..sources import SENTENCE_POLARITY, TEXTFOOLER_SAMPLES
from .base import COLUMNS, POLARITY, Dataset, carve_validation, decode_utf8, normalized, read_textfooler_sample


class MovieReviews(Dataset):
    name = "mr"
    splits = ("train", "validation", "test")
    labels = POLARITY
    validation_fraction = 0.1
    sources = (SENTENCE_POLARITY, TEXTFOOLER_SAMPLES["mr"])

    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        corpus, sample = (source.locate(mirror) for source in self.sources)
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
