"""Yelp review polarity (Zhang et al. 2015) as an out-of-distribution test set: TextFooler's 1,000-example sample."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..sources import TEXTFOOLER_SAMPLES
from .base import POLARITY, Dataset, read_textfooler_sample


def clean_sample_text(text: str) -> str:
    """The sample keeps CSV escaping from its source: enclosing quotes and literal `\\n`."""
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return " ".join(text.replace("\\n", " ").split())


class YelpPolarity(Dataset):
    name = "yelp"
    splits = ("test",)
    labels = POLARITY
    sources = (TEXTFOOLER_SAMPLES["yelp"],)

    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        frame = read_textfooler_sample(self.sources[0].locate(mirror), "yelp/textfooler", "test")
        frame["text"] = frame.text.map(clean_sample_text)
        return frame
