"""RIFT's early stopping (Dong et al. 2021, §3.2: "according to best robust accuracy"): after every epoch, the accuracy
under RIFT's own fast attack, ASCC's (10 Adam steps on the weights of each word's convex hull of counter-fitted
neighbours, then each word replaced by its highest-weighted neighbour), on a seeded subset of the validation set.
RIFT measures it on its test set every other epoch from the tenth; the validation set keeps the test set unseen."""

from __future__ import annotations

import numpy as np
import torch

from .defenses.ascc import TEST_ATTACK, counterfitted_table, substitution_attack
from .defenses.base import eval_mode, model_inputs
from .evaluation import autocast, collate

ATTACK = (
    "ASCC substitution attack as RIFT's test attack ({steps} Adam steps at learning rate {step_size}, entropy "
    "weight {entropy_weight}; each word replaced by its highest-weighted counter-fitted neighbour)"
)


class RobustValidation:
    def __init__(
        self,
        tokenizer,
        ids: list[list[int]],
        labels: list,
        examples: int,
        seed: int,
        model,
        mirror,
        batch_size: int,
        device: torch.device,
    ):
        chosen = np.sort(np.random.default_rng(seed).permutation(len(ids))[:examples])
        self.ids, self.labels = [ids[i] for i in chosen], [labels[i] for i in chosen]
        self.tokenizer, self.seed, self.batch_size, self.device = tokenizer, seed, batch_size, device
        self.neighbors = counterfitted_table(tokenizer, mirror, model.get_input_embeddings().num_embeddings).to(device)

    def accuracy(self, model) -> float:
        """Share of the subset still classified correctly after the attack."""
        order = np.argsort([len(sequence) for sequence in self.ids], kind="stable")  # least padding per batch
        correct = torch.zeros((), device=self.device)
        with eval_mode(model):
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = collate(
                    self.tokenizer, [self.ids[i] for i in chunk], [self.labels[i] for i in chunk], self.device
                )
                inputs = model_inputs(batch)
                input_ids = inputs.pop("input_ids")
                with autocast(self.device):
                    attacked = substitution_attack(model, input_ids, inputs, batch["labels"], self.neighbors)
                    with torch.no_grad():
                        predicted = model(input_ids=attacked, **inputs).logits.argmax(-1)
                correct += (predicted == batch["labels"]).sum()
        return float(correct) / len(self.ids)

    def describe(self) -> dict:
        return {
            "by": "robust validation accuracy",
            "attack": ATTACK.format(**TEST_ATTACK),
            "examples": len(self.ids),
            "seed": self.seed,
        }
