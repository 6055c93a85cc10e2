"""Data augmentation (the paper's AT-DA family): the baseline objective, trained on the training set plus
augmented copies made once, before training, by `rule augment` (sharded over the training set)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from .base import AugmentationContext
from .baseline import Baseline


class DataAugmentation(Baseline):
    augments_data = True
    token_level = False  # texts are augmented, and keep their one label

    def __init__(self, augmented_fraction: float = 1.0, samples_per_example: int = 1, **params):
        super().__init__(augmented_fraction=augmented_fraction, samples_per_example=samples_per_example, **params)
        self.augmented_fraction = augmented_fraction
        self.samples_per_example = samples_per_example
        self._loaded: dict = {}

    def describe_augmentation(self, context: AugmentationContext) -> dict:
        """How the augmentations are made beyond the defense's settings (e.g. the translation backend's
        version), recorded with them."""
        return {}

    def loaded(self, context: AugmentationContext, load: Callable[[AugmentationContext], object]):
        """What `load(context)` loads (models, a translator), once per mirror and device: the augment stage
        calls `augment` chunk by chunk."""
        key = (context.mirror, context.device)
        if key not in self._loaded:
            self._loaded[key] = load(context)
        return self._loaded[key]


def example_rng(seed: int, example_id: str) -> np.random.Generator:
    """Randomness that depends only on the example, so augmentations do not depend on sharding or batching."""
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "little")])
