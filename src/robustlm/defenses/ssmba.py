"""SSMBA (Ng et al. 2020): corrupt an input with masked-LM noise and reconstruct it by sampling from the MLM.

As the reference implementation (nng555/ssmba): round(noise_probability * length) tokens (probabilistically
rounded) are selected; of those, a share is replaced by random tokens, a share left unchanged and the rest
masked; every selected position is then resampled from the MLM's distribution (top-k, or the full vocabulary
without special tokens). A draw identical to the input is discarded and retried up to `max_tries` times.
A sentence pair is corrupted and reconstructed as one input ([CLS] premise [SEP] hypothesis [SEP], both texts
noised, each reconstructed with the other as context), as the reference encodes its additional sentences.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models import load_tokenizer, resolve_model
from .augmentation import DataAugmentation, example_rng
from .base import AugmentationContext


def corrupt(
    ids: list[int],
    rng: np.random.Generator,
    tokenizer,
    noise_probability: float,
    random_token_probability: float,
    leave_unmasked_probability: float,
) -> tuple[list[int], np.ndarray]:
    """The noised copy of `ids` and the positions selected (never [CLS]/[SEP])."""
    special = set(tokenizer.all_special_ids)
    candidates = np.array([position for position, token in enumerate(ids) if token not in special])
    count = min(len(candidates), int(noise_probability * len(candidates) + rng.random()))
    positions = np.sort(rng.choice(candidates, size=count, replace=False)) if count else np.empty(0, dtype=int)
    noised = list(ids)
    kept_or_random = random_token_probability + leave_unmasked_probability
    for position in positions:
        draw = rng.random()
        if draw >= kept_or_random:
            noised[position] = tokenizer.mask_token_id
        elif draw < random_token_probability:
            noised[position] = int(rng.integers(len(tokenizer)))
    return noised, positions


def decoded(tokenizer, ids: list[int], pair: bool) -> str | tuple[str, str]:
    """The text of `ids`, or of a pair the two texts either side of its first [SEP] (reconstruction never samples
    special tokens, so the separator stays where it was)."""
    if not pair:
        return tokenizer.decode(ids, skip_special_tokens=True)
    separator = ids.index(tokenizer.sep_token_id)
    return tuple(tokenizer.decode(part, skip_special_tokens=True) for part in (ids[:separator], ids[separator + 1 :]))


class Ssmba(DataAugmentation):
    name = "ssmba"

    def __init__(
        self,
        noise_probability: float = 0.15,
        random_token_probability: float = 0.1,
        leave_unmasked_probability: float = 0.1,
        top_k: int | None = None,
        max_tries: int = 10,
        masked_lm: str = "bert-base-uncased",
        **params,
    ):
        super().__init__(
            noise_probability=noise_probability,
            random_token_probability=random_token_probability,
            leave_unmasked_probability=leave_unmasked_probability,
            top_k=top_k,
            max_tries=max_tries,
            masked_lm=masked_lm,
            **params,
        )
        self.noise_probability, self.top_k, self.max_tries = noise_probability, top_k, max_tries
        self.random_token_probability, self.leave_unmasked_probability = (
            random_token_probability,
            leave_unmasked_probability,
        )
        self.masked_lm = masked_lm

    def needed_models(self) -> list[str]:
        return [self.masked_lm]

    def load_masked_lm(self, context: AugmentationContext):
        """The reconstructing MLM, its tokenizer, and the tokens it may not sample."""
        from transformers import AutoModelForMaskedLM

        path = resolve_model(self.masked_lm, context.mirror)
        tokenizer = load_tokenizer(path)
        mlm = AutoModelForMaskedLM.from_pretrained(path).to(context.device).eval()
        # the reference never samples special tokens back into a sentence
        forbidden = torch.zeros(mlm.config.vocab_size, dtype=torch.bool, device=context.device)
        forbidden[[i for i in tokenizer.all_special_ids if i < mlm.config.vocab_size]] = True
        return tokenizer, mlm, forbidden

    def augment(self, texts, example_ids, context: AugmentationContext, text_pairs=None):
        from ..evaluation import encode  # the defenses package is imported by evaluation

        tokenizer, mlm, forbidden = self.loaded(context, self.load_masked_lm)
        originals = encode(tokenizer, texts, context.max_length, text_pairs)
        rngs = [example_rng(context.seed, example_id) for example_id in example_ids]
        augmented: list[list[str]] = [[] for _ in texts]
        tries = [0] * len(texts)
        pending = list(range(len(texts)))
        while pending:
            for start in range(0, len(pending), context.batch_size):
                chunk = pending[start : start + context.batch_size]
                noised = [
                    corrupt(
                        originals[i],
                        rngs[i],
                        tokenizer,
                        self.noise_probability,
                        self.random_token_probability,
                        self.leave_unmasked_probability,
                    )
                    for i in chunk
                ]
                for i, sample in zip(
                    chunk, self.reconstruct(mlm, tokenizer, noised, [rngs[i] for i in chunk], forbidden, context.device)
                ):
                    tries[i] += 1
                    text = decoded(tokenizer, sample, text_pairs is not None)
                    if sample != originals[i] and text not in augmented[i]:
                        augmented[i].append(text)
            pending = [i for i in pending if len(augmented[i]) < self.samples_per_example and tries[i] < self.max_tries]
        return augmented

    @torch.no_grad()
    def reconstruct(
        self, mlm, tokenizer, noised: list[tuple[list[int], np.ndarray]], rngs, forbidden, device
    ) -> list[list[int]]:
        """Each noised sequence with its selected positions resampled from the MLM (Gumbel-max, per-example RNG)."""
        from ..evaluation import autocast, collate

        batch = collate(tokenizer, [ids for ids, _ in noised], device=device)
        with autocast(device):
            logits = mlm(**batch).logits
        reconstructed = []
        for row, ((ids, positions), rng) in enumerate(zip(noised, rngs)):
            sample = list(ids)
            if len(positions):
                scores = (
                    logits[row, torch.as_tensor(positions, device=device)].float().masked_fill(forbidden, -torch.inf)
                )
                if self.top_k:
                    threshold = scores.topk(self.top_k, dim=-1).values[:, -1:]
                    scores = scores.masked_fill(scores < threshold, -torch.inf)
                scores = scores.cpu().numpy() + rng.gumbel(size=scores.shape)
                for position, token in zip(positions, scores.argmax(-1)):
                    sample[position] = int(token)
            reconstructed.append(sample)
        return reconstructed
