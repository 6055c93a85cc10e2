"""Input-space adversarial training (the paper's AT-IP family): A2T, A2T-MLM (Yoo & Qi 2021) and training on
BERT-Attack examples, with the semantics of TextAttack's `Trainer`.

The first `clean_epochs` epochs train on the training set only. Before every later epoch the defense attacks
shuffled training examples with its TextAttack recipe (the attack stage's, with its offline substitutions)
against the current model in eval mode, with a per-example query budget, until a fraction gamma of the
training set has yielded successful adversarial examples (or every example was tried); the epoch then trains
on the training set plus those examples, their loss weighted by alpha. Generation is resumable: every attacked
example is appended to a checkpoint in the run's work directory as it finishes. With `generation_workers` > 1
the shuffled examples are sharded over that many processes (TextAttack's workers per device), each with its
own copy of the model on the same device and its share of the successes to find.
"""

from __future__ import annotations

import copy
import math
import time
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..attacks import USE_STUDENT
from ..datasets.base import TEXT_PAIR
from ..jsonl_checkpoint import fingerprint
from ..sources import COUNTERFITTED_NEIGHBORS, PublishedFile
from .base import Defense, TrainingContext, model_inputs


class InputSpaceAdversarialTraining(Defense):
    attack: ClassVar[str]  # the recipe in robustlm.attacks.ATTACKS the examples are generated with
    token_level = False  # attacks perturb sentences with one label

    def __init__(
        self,
        adversarial_fraction: float = 0.2,
        query_budget: int = 200,
        alpha: float = 1.0,
        clean_epochs: int = 1,
        query_batch_size: int = 32,
        precision: str = "float32",
        masked_lm: str = "bert-base-uncased",
        sentence_encoder: str = USE_STUDENT,
        generation_workers: int = 1,
    ):
        super().__init__(
            adversarial_fraction=adversarial_fraction,
            query_budget=query_budget,
            alpha=alpha,
            clean_epochs=clean_epochs,
            query_batch_size=query_batch_size,
            precision=precision,
            masked_lm=masked_lm,
            sentence_encoder=sentence_encoder,
            generation_workers=generation_workers,
        )
        self.adversarial_fraction, self.alpha, self.clean_epochs = adversarial_fraction, alpha, clean_epochs
        self.workers = generation_workers
        self.generations: list[dict] = []  # one summary per adversarial epoch
        self.substitutions: list[dict] = []  # the attack's offline resource replacements
        self._attack = None

    def needed_models(self) -> list[str]:
        return [self.params["masked_lm"]]

    def needed_files(self, mirror: bool) -> list[PublishedFile]:
        return [COUNTERFITTED_NEIGHBORS] if mirror else []  # a mirror's attacks use them (attacks/offline.py)

    def needed_attacks(self) -> list[str]:
        return [self.attack]

    def prepare(self, context: TrainingContext) -> None:
        if context.train_texts is None or context.work_dir is None:
            raise ValueError(f"defense '{self.name}' attacks raw training texts and needs a work directory")
        self.context = context

    def planned_extra_examples(self, epoch: int, train_size: int) -> int:
        return 0 if epoch <= self.clean_epochs else math.ceil(self.adversarial_fraction * train_size)

    def selectable(self, epoch: int) -> bool:
        return epoch > self.clean_epochs  # a model from the clean epochs is not adversarially trained

    def extra_training_examples(self, epoch, model):
        wanted = self.planned_extra_examples(epoch, len(self.context.train_texts))
        if not wanted:
            return [], []
        from ..attacks.runner import attack_examples

        started = time.perf_counter()
        order = np.random.default_rng([self.context.seed, epoch]).permutation(len(self.context.train_texts))
        premises = self.context.train_text_pairs is not None  # a pair's hypothesis is attacked, its premise kept
        candidates = pd.DataFrame(
            {
                "id": [f"train/{i}" for i in order],
                "text": [self.context.train_texts[i] for i in order],
                **({TEXT_PAIR: [self.context.train_text_pairs[i] for i in order]} if premises else {}),
                "label": [int(self.context.train_labels[i]) for i in order],
            }
        )
        shards = [
            (
                candidates.iloc[worker :: self.workers],
                self.context.work_dir / f"adversarial-epoch{epoch:03d}-shard{worker}of{self.workers}.jsonl",
            )
            for worker in range(self.workers)
        ]
        key, quota = fingerprint(self.context.run_key, epoch), math.ceil(wanted / self.workers)
        if self.workers == 1:
            # the attacks reseed the global RNGs per example; training's random stream must not depend on them
            ((examples, checkpoint),) = shards
            model.eval()  # A2T's gradient word ranking runs the model directly: no dropout while attacking
            with torch.random.fork_rng(devices=[self.context.device] if self.context.device.type == "cuda" else []):
                records = attack_examples(self.attack_on(model), examples, self.context.seed, checkpoint, key, quota)
            model.train()
        else:
            records = self.generate_in_workers(model, shards, key, quota)
        # in the shuffled order, at most `wanted` (the workers' quotas may add up to a few more)
        position = {example_id: index for index, example_id in enumerate(candidates.id)}
        successful = sorted((r for r in records if r["result"] == "successful"), key=lambda r: position[r["id"]])[
            :wanted
        ]
        self.generations.append(
            {
                "epoch": epoch,
                "wanted": wanted,
                "attacked": len(records),
                "successful": len(successful),
                "skipped": sum(record["result"] == "skipped" for record in records),
                "queries": sum(record["queries"] for record in records),
                "seconds": time.perf_counter() - started,
            }
        )
        texts = [
            (self.context.train_texts[int(r["id"].removeprefix("train/"))], r["perturbed_text"])
            if premises
            else r["perturbed_text"]
            for r in successful
        ]
        return texts, [record["label"] for record in successful]

    def attack_settings(self) -> dict:
        settings = {
            key: self.params[key]
            for key in ("query_budget", "query_batch_size", "precision", "masked_lm", "sentence_encoder")
        }
        return {**settings, "max_length": self.context.max_length}

    def attack_on(self, model):
        """Built once (loading its encoders is slow); the wrapper queries the live model, so only the goal
        function's cache of earlier epochs' predictions must go."""
        if self._attack is None:
            from ..attacks.runner import build_attack_on

            self._attack, self.substitutions = build_attack_on(
                self.attack,
                self.attack_settings(),
                model,
                self.context.tokenizer,
                self.context.mirror,
                self.context.device,
            )
        self._attack.clear_cache()
        return self._attack

    def generate_in_workers(self, model, shards, key: str, quota: int) -> list[dict]:
        snapshot = copy.deepcopy(model).cpu().eval()
        threads = max(1, torch.get_num_threads() // self.workers)
        jobs = [
            (
                self.attack,
                self.attack_settings(),
                snapshot,
                self.context.tokenizer,
                self.context.mirror,
                str(self.context.device),
                examples,
                self.context.seed,
                checkpoint,
                key,
                quota,
                threads,
            )
            for examples, checkpoint in shards
        ]
        with torch.multiprocessing.get_context("spawn").Pool(self.workers) as pool:
            results = pool.starmap(attack_shard, jobs)
        self.substitutions = results[0][1]
        return [record for records, _ in results for record in records]

    def loss(self, model, batch):
        losses = F.cross_entropy(model(**model_inputs(batch)).logits, batch["labels"], reduction="none")
        return (losses * torch.where(batch["adversarial"], self.alpha, 1.0)).mean()

    def report(self) -> dict:
        return {"attack": self.attack, "generations": self.generations, "substitutions": self.substitutions}

    def state_dict(self) -> dict:
        return {"generations": self.generations, "substitutions": self.substitutions}

    def load_state_dict(self, state: dict) -> None:
        self.generations, self.substitutions = state["generations"], state["substitutions"]


def attack_shard(
    attack_name: str,
    settings: dict,
    model,
    tokenizer,
    mirror,
    device: str,
    examples: pd.DataFrame,
    seed: int,
    checkpoint,
    key: str,
    quota: int,
    threads: int,
) -> tuple[list[dict], list]:
    """One generation worker (a spawned process): its own attack on its own copy of the model."""
    from ..attacks.runner import attack_examples, build_attack_on

    torch.set_num_threads(threads)
    attack, substitutions = build_attack_on(attack_name, settings, model, tokenizer, mirror, torch.device(device))
    return attack_examples(attack, examples, seed, checkpoint, key, quota), substitutions


class A2T(InputSpaceAdversarialTraining):
    name = attack = "a2t"


class A2TMlm(InputSpaceAdversarialTraining):
    name = attack = "a2t_mlm"


class BertAttackTraining(InputSpaceAdversarialTraining):
    name = attack = "bert_attack"
