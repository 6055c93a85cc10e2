"""Yelp review polarity (Zhang et al. 2015) as an out-of-distribution test set: TextFooler's 1,000-example sample."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .base import Dataset, MirrorFile, load_hub_dataset, read_textfooler_sample

SAMPLE_SIZE = 1000


def clean_sample_text(text: str) -> str:
    """The sample keeps CSV escaping from its source: enclosing quotes and literal `\\n`."""
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return " ".join(text.replace("\\n", " ").split())


class YelpPolarity(Dataset):
    name = "yelp"
    splits = ("test",)
    hub_id = "yelp_polarity"
    hub_note = f"hub copy is a seeded {SAMPLE_SIZE}-example sample of yelp_polarity test, not TextFooler's sample"
    mirror_files = (
        MirrorFile(
            "datasets/textfooler/yelp",
            "befbfa6f4737ed813f0830bcab7ce9df1fa141a0648bab04f894c9318c8231fc",
            "the TextFooler repository (data/yelp)",
        ),
    )

    def from_mirror(self, mirror: Path, seed: int) -> pd.DataFrame:
        frame = read_textfooler_sample(self.mirror_files[0].verified(mirror), "yelp/textfooler", "test")
        frame["text"] = frame.text.map(clean_sample_text)
        return frame

    def from_hub(self, seed: int) -> pd.DataFrame:
        test = load_hub_dataset(self.hub_id)["test"].shuffle(seed=seed).select(range(SAMPLE_SIZE))
        return pd.DataFrame({
            "id": [f"yelp/hub/{index}" for index in range(SAMPLE_SIZE)],
            "text": test["text"],
            "label": test["label"],
            "split": "test",
        })
