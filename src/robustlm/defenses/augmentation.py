"""Data augmentation (the paper's AT-DA family): the baseline objective, trained on the training set plus
augmented copies made once, before training, by `rule augment` (sharded over the training set)."""
from __future__ import annotations

import hashlib

import numpy as np

from .baseline import Baseline


class DataAugmentation(Baseline):
    augments_data = True
    token_level = False  # texts are augmented, and keep their one label

    def __init__(self, augmented_fraction: float = 1.0, samples_per_example: int = 1, **params):
        super().__init__(augmented_fraction=augmented_fraction, samples_per_example=samples_per_example, **params)
        self.augmented_fraction = augmented_fraction
        self.samples_per_example = samples_per_example


def example_rng(seed: int, example_id: str) -> np.random.Generator:
    """Randomness that depends only on the example, so augmentations do not depend on sharding or batching."""
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "little")])
