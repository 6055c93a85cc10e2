"""Input-space adversarial training (the paper's AT-IP family): A2T, A2T-MLM (Yoo & Qi 2021) and training on
BERT-Attack examples, with the semantics of TextAttack's `Trainer`.

The first `clean_epochs` epochs train on the training set only. Before every later epoch the defense attacks
shuffled training examples with its TextAttack recipe (the attack stage's, with its offline substitutions)
against the current model in eval mode, with a per-example query budget, until a fraction gamma of the
training set has yielded successful adversarial examples (or every example was tried); the epoch then trains
on the training set plus those examples, their loss weighted by alpha. Generation is resumable: every attacked
example is appended to a checkpoint in the run's work directory as it finishes.
"""
from __future__ import annotations

import math
import time
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .base import Defense, TrainingContext, model_inputs


class InputSpaceAdversarialTraining(Defense):
    attack: ClassVar[str]  # the recipe in robustlm.attacks.ATTACKS the examples are generated with
    token_level = False  # attacks perturb sentences with one label

    def __init__(self, adversarial_fraction: float = 0.2, query_budget: int = 200, alpha: float = 1.0,
                 clean_epochs: int = 1, query_batch_size: int = 32, masked_lm: str = "bert-base-uncased",
                 sentence_encoder: str | None = None):
        super().__init__(adversarial_fraction=adversarial_fraction, query_budget=query_budget, alpha=alpha,
                         clean_epochs=clean_epochs, query_batch_size=query_batch_size, masked_lm=masked_lm,
                         sentence_encoder=sentence_encoder)
        self.adversarial_fraction, self.alpha, self.clean_epochs = adversarial_fraction, alpha, clean_epochs
        self.generations: list[dict] = []  # one summary per adversarial epoch
        self._attack = None

    def prepare(self, context: TrainingContext) -> None:
        if context.train_texts is None or context.work_dir is None:
            raise ValueError(f"defense '{self.name}' attacks raw training texts and needs a work directory")
        self.context = context

    def planned_extra_examples(self, epoch: int, train_size: int) -> int:
        return 0 if epoch <= self.clean_epochs else math.ceil(self.adversarial_fraction * train_size)

    def extra_training_examples(self, epoch, model):
        wanted = self.planned_extra_examples(epoch, len(self.context.train_texts))
        if not wanted:
            return [], []
        from ..attacks.runner import attack_examples, fingerprint

        started = time.perf_counter()
        attack = self.attack_on(model)
        order = np.random.default_rng([self.context.seed, epoch]).permutation(len(self.context.train_texts))
        candidates = pd.DataFrame({"id": [f"train/{i}" for i in order],
                                   "text": [self.context.train_texts[i] for i in order],
                                   "label": [int(self.context.train_labels[i]) for i in order]})
        # the attacks reseed the global RNGs per example; training's random stream must not depend on them
        with torch.random.fork_rng(devices=[self.context.device] if self.context.device.type == "cuda" else []):
            records = attack_examples(attack, candidates, self.context.seed,
                                      self.context.work_dir / f"adversarial-epoch{epoch:03d}.jsonl",
                                      key=fingerprint(self.params, epoch), enough_successes=wanted)
        model.train()
        successful = [record for record in records if record["result"] == "successful"]
        self.generations.append({
            "epoch": epoch, "wanted": wanted, "attacked": len(records), "successful": len(successful),
            "skipped": sum(record["result"] == "skipped" for record in records),
            "queries": sum(record["queries"] for record in records), "seconds": time.perf_counter() - started,
        })
        return [record["perturbed_text"] for record in successful], [record["label"] for record in successful]

    def attack_on(self, model):
        """Built once (loading its encoders is slow); the wrapper queries the live model, so only the goal
        function's cache of earlier epochs' predictions must go."""
        if self._attack is None:
            from ..attacks.runner import build_attack_on

            settings = {key: self.params[key] for key in ("query_budget", "query_batch_size", "masked_lm", "sentence_encoder")}
            self._attack, self.substitutions = build_attack_on(
                self.attack, {**settings, "max_length": self.context.max_length}, model, self.context.tokenizer,
                self.context.mirror, self.context.device)
        self._attack.clear_cache()
        return self._attack

    def loss(self, model, batch):
        losses = F.cross_entropy(model(**model_inputs(batch)).logits, batch["labels"], reduction="none")
        return (losses * torch.where(batch["adversarial"], self.alpha, 1.0)).mean()

    def report(self) -> dict:
        return {"attack": self.attack, "generations": self.generations,
                "substitutions": getattr(self, "substitutions", [])}

    def state_dict(self) -> dict:
        return {"generations": self.generations}

    def load_state_dict(self, state: dict) -> None:
        self.generations = state["generations"]


class A2T(InputSpaceAdversarialTraining):
    name = attack = "a2t"


class A2TMlm(InputSpaceAdversarialTraining):
    name = attack = "a2t_mlm"


class BertAttackTraining(InputSpaceAdversarialTraining):
    name = attack = "bert_attack"
