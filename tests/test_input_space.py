"""Input-space adversarial training (A2T and kin): adversarial examples generated against the current model
join the training set of each adversarial epoch, weighted by alpha, resumably."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlm import datasets
from robustlm.defenses import TrainingContext, build_defense
from robustlm.evaluation import collate, encode, predict_proba
from robustlm.models import load_classifier, load_tokenizer
from robustlm.training import TrainingData, train_model
from test_defenses import INPUT_SPACE_PARAMS

PARAMS = {**INPUT_SPACE_PARAMS, "adversarial_fraction": 0.25, "query_budget": 40}


@pytest.fixture(scope="module")
def mr_train(mirror):
    frame, _ = datasets.prepare(datasets.get("mr"), mirror, seed=0)
    train = datasets.select(frame[frame.split == "train"], 256, seed=0)
    return train.text.tolist()[:32], train.label.tolist()[:32], train


def fitted(tiny_model, ids: list[list[int]], labels: np.ndarray, directory: Path) -> Path:
    """The tiny model fitted to (`ids`, `labels`) for a few dozen steps: its predictions then depend on words, so word
    swaps flip some (a random model's barely move)."""
    tokenizer = load_tokenizer(str(tiny_model))
    model = load_classifier(str(tiny_model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for step in range(64):
        rows = np.random.default_rng(step).choice(len(ids), 16, replace=False)
        batch = collate(tokenizer, [ids[i] for i in rows], labels[rows])
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def sentiment_model(tiny_model, mr_train, tmp_path_factory):
    train = mr_train[2]
    ids = encode(load_tokenizer(str(tiny_model)), train.text, 32)
    return fitted(tiny_model, ids, train.label.to_numpy(), tmp_path_factory.mktemp("sentiment-model"))


@pytest.fixture(scope="module")
def pair_model(tiny_model, mr_train, tmp_path_factory):
    """A sentence-pair classifier whose label lies in the hypothesis: premises name the review, hypotheses are MR's
    texts."""
    train = mr_train[2]
    premises = [f"review number {i} of the film ." for i in range(len(train))]
    ids = encode(load_tokenizer(str(tiny_model)), premises, 48, train.text)
    return fitted(tiny_model, ids, train.label.to_numpy(), tmp_path_factory.mktemp("pair-model")), premises


def prepared(name, tiny_model, mirror, texts, labels, work_dir, params=PARAMS, text_pairs=None):
    model = load_classifier(str(tiny_model))
    tokenizer = load_tokenizer(str(tiny_model))
    defense = build_defense(name, params)
    defense.prepare(
        TrainingContext(
            model=model,
            tokenizer=tokenizer,
            mirror=mirror,
            train_texts=texts,
            train_text_pairs=text_pairs,
            train_labels=labels,
            max_length=48 if text_pairs else 32,
            seed=0,
            work_dir=work_dir,
        )
    )
    return defense, model, tokenizer


def test_an_adversarial_epoch_adds_examples_the_model_misclassified(sentiment_model, mirror, mr_train, tmp_path):
    texts, labels, _ = mr_train
    defense, model, tokenizer = prepared("a2t", sentiment_model, mirror, texts, labels, tmp_path)
    assert defense.extra_training_examples(1, model) == ([], [])  # the clean epoch
    adversarial, adversarial_labels = defense.extra_training_examples(2, model)
    assert adversarial and len(adversarial) <= 8  # gamma = 0.25 of 32
    assert model.training  # handed back to the loop in training mode
    predicted = predict_proba(model, tokenizer, encode(tokenizer, adversarial, 32), 8, torch.device("cpu")).argmax(1)
    assert (predicted != np.asarray(adversarial_labels)).all()
    assert not set(adversarial) & set(texts)
    generation = defense.report()["generations"][0]
    assert generation["successful"] == len(adversarial) and generation["attacked"] >= len(adversarial)

    # a killed job's rerun replays the finished attacks from the work directory instead of attacking again
    resumed, model, _ = prepared("a2t", sentiment_model, mirror, texts, labels, tmp_path)
    resumed.attack_on(model).attack = lambda *args: pytest.fail("attacked an example again")
    assert resumed.extra_training_examples(2, model) == (adversarial, adversarial_labels)


def test_adversarial_training_trains_on_clean_plus_adversarial_examples(sentiment_model, mirror, mr_train, tmp_path):
    texts, labels, _ = mr_train
    tokenizer = load_tokenizer(str(sentiment_model))
    ids = encode(tokenizer, texts, 32)
    data = TrainingData(ids, labels, ids[:8], labels[:8], load_classifier, train_texts=texts)
    params = {
        "seed": 0,
        "defense": "a2t",
        "method": "a2t",
        "defense_params": PARAMS,
        "dataset": "mr",
        "model": str(sentiment_model),
        "train_size": 32,
        "training": {
            "max_length": 32,
            "batch_size": 8,
            "epochs": 2,
            "learning_rate": 1e-3,
            "weight_decay": 0.0,
            "warmup_ratio": 0.0,
            "max_grad_norm": 1.0,
            "optimizer": "adamw",
            "selection": "clean",
            "selection_examples": 200,
        },
    }
    metrics = train_model(
        params,
        data,
        str(sentiment_model),
        tokenizer,
        tmp_path / "model",
        tmp_path / "checkpoints",
        tmp_path / "metrics.json",
        mirror=mirror,
    )
    made = metrics["defense_report"]["generations"][0]["successful"]
    assert made > 0 and metrics["examples_trained"] == 2 * 32 + made
    assert metrics["best_epoch"] == 2  # the clean epoch's model is never the one kept
    assert 0 < metrics["adversarial_generation_seconds"] < metrics["train_seconds"]
    assert json.loads((tmp_path / "metrics.json").read_text())["defense_report"]["attack"] == "a2t"


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_adversarial_examples_loss_is_weighted_by_alpha(sentiment_model, mirror, mr_train, tmp_path, alpha):
    texts, labels, _ = mr_train
    defense, model, tokenizer = prepared(
        "a2t", sentiment_model, mirror, texts, labels, tmp_path, {**PARAMS, "alpha": alpha}
    )
    batch = collate(tokenizer, encode(tokenizer, texts[:8], 32), labels[:8])
    clean = defense.loss(model.eval(), {**batch, "adversarial": torch.zeros(8, dtype=torch.bool)})
    half = torch.arange(8) < 4
    mixed = defense.loss(model, {**batch, "adversarial": half})
    per_example = torch.nn.functional.cross_entropy(
        model(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"], reduction="none"
    )
    assert mixed.item() == pytest.approx(
        (alpha * per_example[half].sum() + per_example[~half].sum()).item() / 8, rel=1e-5
    )
    assert clean.item() == pytest.approx(per_example.mean().item(), rel=1e-5)


def test_generation_sharded_over_worker_processes(sentiment_model, mirror, mr_train, tmp_path):
    texts, labels, _ = mr_train
    defense, model, tokenizer = prepared(
        "a2t", sentiment_model, mirror, texts, labels, tmp_path, {**PARAMS, "generation_workers": 2}
    )
    adversarial, adversarial_labels = defense.extra_training_examples(2, model)
    assert 0 < len(adversarial) <= 8
    predicted = predict_proba(model, tokenizer, encode(tokenizer, adversarial, 32), 8, torch.device("cpu")).argmax(1)
    assert (predicted != np.asarray(adversarial_labels)).all()
    attacked = [
        {
            json.loads(line)["id"]
            for line in (tmp_path / f"adversarial-epoch002-shard{w}of2.jsonl").read_text().splitlines()[1:]
        }
        for w in range(2)
    ]
    assert attacked[0] and attacked[1] and not attacked[0] & attacked[1]
    assert sum(map(len, attacked)) == defense.report()["generations"][0]["attacked"]


def test_on_sentence_pairs_an_adversarial_epoch_perturbs_hypotheses_and_keeps_premises(pair_model, mirror, mr_train):
    path, all_premises = pair_model
    hypotheses, labels = (values[:16] for values in mr_train[:2])  # 4 adversarial examples wanted
    premises = all_premises[:16]
    work_dir = path.parent / "pairs-work"
    work_dir.mkdir()
    defense, model, tokenizer = prepared("a2t", path, mirror, premises, labels, work_dir, text_pairs=hypotheses)
    adversarial, adversarial_labels = defense.extra_training_examples(2, model)
    assert adversarial and all(isinstance(pair, tuple) for pair in adversarial)
    by_premise = dict(zip(premises, hypotheses))
    for premise, hypothesis in adversarial:
        original = by_premise[premise]  # the premise of the example attacked, unchanged
        assert hypothesis != original and len(hypothesis.split()) == len(original.split())  # words swapped
    new_premises, new_hypotheses = zip(*adversarial)
    predicted = predict_proba(
        model, tokenizer, encode(tokenizer, new_premises, 48, new_hypotheses), 8, torch.device("cpu")
    ).argmax(1)
    assert (predicted != np.asarray(adversarial_labels)).all()
