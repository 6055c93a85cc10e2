import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from robustlm import datasets
from robustlm.training import AdamaxW, epoch_batches, fine_tune

PARAMS = {
    "model": "tiny",
    "dataset": "mr",
    "data_seed": 0,
    "train_size": 96,
    "validation_size": 32,
    "labels": ["negative", "positive"],
    "defense": "baseline",
    "method": "baseline",
    "defense_params": {},
    "seed": 7,
    "training": {
        "max_length": 24,
        "batch_size": 16,
        "epochs": 3,
        "learning_rate": 1e-3,
        "weight_decay": 0.01,
        "warmup_ratio": 0.1,
        "max_grad_norm": 1.0,
        "optimizer": "adamw",
        "selection": "clean",
        "selection_examples": 200,
    },
}


@pytest.fixture(scope="module")
def mr_data(tmp_path_factory, mirror) -> Path:
    path = tmp_path_factory.mktemp("data") / "mr.parquet"
    datasets.prepare(datasets.get("mr"), mirror, seed=0)[0].to_parquet(path)
    return path


def run_fine_tune(tiny_model, data, root: Path, params=PARAMS, mirror=None) -> dict:
    return fine_tune(
        params,
        str(tiny_model),
        data,
        root / "model",
        root / "checkpoints",
        root / "metrics.json",
        device="cpu",
        mirror=mirror,
    )


def weights(root: Path) -> dict:
    return load_file(root / "model" / "model.safetensors")


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    lengths = list(np.random.default_rng(0).integers(1, 50, size=203))
    batches = epoch_batches(lengths, 8, seed=1, epoch=2)
    assert sorted(np.concatenate(batches).tolist()) == list(range(203))
    assert all(len(b) <= 8 for b in batches)
    again = epoch_batches(lengths, 8, seed=1, epoch=2)
    assert all((a == b).all() for a, b in zip(batches, again))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, epoch_batches(lengths, 8, seed=1, epoch=3)))


def test_batches_are_padded_as_the_tokenizer_pads_them(mirror):
    from robustlm.evaluation import collate
    from robustlm.models import load_tokenizer

    tokenizer = load_tokenizer(str(mirror / "models" / "minilm-l6-h384-uncased-mlm"))
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1000, 2000, size).tolist() for size in (5, 1, 17, 17, 9)]
    batch = collate(tokenizer, sequences, [[1] * len(s) for s in sequences])
    reference = tokenizer.pad({"input_ids": sequences}, return_tensors="pt")
    assert torch.equal(batch["input_ids"], reference["input_ids"])
    assert torch.equal(batch["attention_mask"], reference["attention_mask"])
    assert batch["labels"].tolist()[1] == [1] + [-100] * 16  # token labels padded with the ignored label


def test_sentence_pairs_get_the_tokenizers_segment_ids(mirror):
    from robustlm.evaluation import collate, encode
    from robustlm.models import load_tokenizer

    tokenizer = load_tokenizer(str(mirror / "models" / "minilm-l6-h384-uncased-mlm"))
    premises, hypotheses = ["a man sleeps on a bench", "two dogs"], ["a man rests", "animals play outside today"]
    batch = collate(tokenizer, encode(tokenizer, premises, 32, hypotheses))
    reference = tokenizer(premises, hypotheses, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(batch[key], reference[key]), key
    assert "token_type_ids" not in collate(tokenizer, encode(tokenizer, premises, 32))  # single texts: the default


def test_metrics_and_best_model(tiny_model, mr_data, tmp_path):
    metrics = run_fine_tune(tiny_model, mr_data, tmp_path)
    assert metrics["train_examples"] == 96 and metrics["validation_examples"] == 32
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["best_validation_accuracy"] == max(h["validation_accuracy"] for h in metrics["history"])
    assert metrics["examples_per_second"] > 0 and metrics["passes_per_step"] == 1
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert (tmp_path / "model" / "config.json").is_file()


def test_adamaxw_is_mt_dnns_adamax_with_decoupled_weight_decay():
    """MT-DNN's AdamaxW step by step: p *= 1 - lr * wd; m = b1 m + (1 - b1) g; u = max(b2 u, |g| + eps);
    p -= lr / (1 - b1^t) * m / u."""
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(5))
    optimizer = AdamaxW([{"params": [weight], "weight_decay": 0.1}], lr=0.01)
    reference, m, u = weight.detach().clone(), torch.zeros(5), torch.zeros(5)
    for t in range(1, 4):
        gradient = torch.randn(5)
        weight.grad = gradient.clone()
        optimizer.step()
        reference *= 1 - 0.01 * 0.1
        m = 0.9 * m + 0.1 * gradient
        u = torch.maximum(0.999 * u, gradient.abs() + 1e-8)
        reference -= 0.01 / (1 - 0.9**t) * m / u
        assert torch.allclose(weight.detach(), reference, atol=1e-7)


def test_robust_selection_keeps_the_epoch_with_the_best_robust_accuracy(tiny_model, mr_data, tmp_path, mirror):
    params = {**PARAMS, "training": {**PARAMS["training"], "selection": "robust", "selection_examples": 16}}
    metrics = run_fine_tune(tiny_model, mr_data, tmp_path, params, mirror)
    robust = [h["robust_validation_accuracy"] for h in metrics["history"]]
    assert metrics["best_epoch"] == 1 + int(np.argmax(robust))
    assert metrics["best_robust_validation_accuracy"] == max(robust)
    assert metrics["best_validation_accuracy"] == metrics["history"][metrics["best_epoch"] - 1]["validation_accuracy"]
    assert metrics["selection"]["examples"] == 16 and "ASCC" in metrics["selection"]["attack"]


def test_an_embedding_space_run_records_what_its_perturbation_did(tiny_model, mr_data, tmp_path):
    params = {
        **PARAMS,
        "defense": "pgd_at",
        "method": "pgd_at",
        "defense_params": {"steps": 2, "epsilon": 0.01, "step_size": 0.01, "init_std": 1e-3},
        "training": {**PARAMS["training"], "epochs": 2},
    }
    metrics = run_fine_tune(tiny_model, mr_data, tmp_path, params)
    block = metrics["perturbation"]
    assert block == metrics["history"][-1]["perturbation"] and "perturbation" in metrics["history"][0]
    assert block["steps_measured"] == 96 // 16  # an epoch shorter than the measured window: every step
    assert set(block) == {
        "norm",
        "epsilon",
        "precision",
        "steps_measured",
        "mean_delta_norm",
        "clean_loss",
        "adversarial_loss",
        "start_loss",
        "random_delta_loss",
        "mean_abs_logit_change",
        "start_cosine",
        "ascent_gain",
        "start_share",
        "measurement_seconds",
    }
    assert 0 < sum(h["perturbation"]["measurement_seconds"] for h in metrics["history"]) < metrics["train_seconds"]
    assert block["epsilon"] == 0.01 and block["precision"] == "float32"
    assert run_fine_tune(tiny_model, mr_data, tmp_path / "baseline")["perturbation"] is None


KILLED_AT = """
import json, os, sys
from pathlib import Path
import torch
import robustlm.training as training
params, model, data, root, where, count = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5], int(sys.argv[6])
calls = []
def count_then_maybe_die():
    calls.append(1)
    if len(calls) == count:
        os.kill(os.getpid(), 9)
if where == "after checkpoint":
    save_checkpoint = training.save_checkpoint
    def save_then_maybe_die(*args):
        save_checkpoint(*args)
        count_then_maybe_die()
    training.save_checkpoint = save_then_maybe_die
elif where == "optimizer step":
    step = torch.optim.AdamW.step
    def maybe_die_then_step(self, *args, **kwargs):
        count_then_maybe_die()
        return step(self, *args, **kwargs)
    torch.optim.AdamW.step = maybe_die_then_step
elif where == "checkpoint rename":  # the checkpoint's temporary file is complete, its rename has not happened
    replace = os.replace
    def maybe_die_then_replace(source, target):
        if str(target).endswith(".pt"):
            count_then_maybe_die()
        replace(source, target)
    os.replace = maybe_die_then_replace
training.fine_tune(params, model, data, root / "model", root / "checkpoints", root / "metrics.json", device="cpu")
"""


def kill_at(where: str, count: int, params, tiny_model, mr_data, root: Path) -> None:
    """Run fine-tuning in a process that SIGKILLs itself at the `count`-th `where`."""
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_AT,
            json.dumps(params),
            str(tiny_model),
            str(mr_data),
            str(root),
            where,
            str(count),
        ],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr
    assert not (root / "metrics.json").exists()


def kill_after(epochs: int, params, tiny_model, mr_data, root: Path) -> None:
    kill_at("after checkpoint", epochs, params, tiny_model, mr_data, root)


@pytest.mark.parametrize(
    "where, count, resumed_from",
    [
        ("after checkpoint", 1, 1),  # between epochs
        ("optimizer step", 9, 1),  # mid-way through epoch 2 (6 steps per epoch)
        ("checkpoint rename", 2, 1),  # epoch 2's checkpoint written to its temporary file only
        ("optimizer step", 3, 0),  # mid-way through epoch 1: nothing to resume
    ],
)
def test_killed_job_resumes_from_its_last_checkpoint_and_matches_an_uninterrupted_run(
    where, count, resumed_from, tiny_model, mr_data, tmp_path
):
    kill_at(where, count, PARAMS, tiny_model, mr_data, tmp_path / "interrupted")
    checkpoints = sorted(p.name for p in (tmp_path / "interrupted" / "checkpoints").glob("epoch-*.pt"))
    assert checkpoints == [f"epoch-{epoch:03d}.pt" for epoch in range(1, resumed_from + 1)]

    resumed = run_fine_tune(tiny_model, mr_data, tmp_path / "interrupted")
    assert resumed["resumed_from_epoch"] == resumed_from
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]

    uninterrupted = run_fine_tune(tiny_model, mr_data, tmp_path / "straight")
    assert uninterrupted["resumed_from_epoch"] == 0
    assert [h["validation_accuracy"] for h in resumed["history"]] == [
        h["validation_accuracy"] for h in uninterrupted["history"]
    ]
    a, b = weights(tmp_path / "interrupted"), weights(tmp_path / "straight")
    assert all(torch.equal(a[name], b[name]) for name in a), "resumed run diverged from the uninterrupted one"
    assert not (tmp_path / "interrupted" / "checkpoints").exists()  # cleaned up once the outputs exist


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tiny_model, mr_data, tmp_path, caplog):
    kill_after(2, PARAMS, tiny_model, mr_data, tmp_path)
    newest = tmp_path / "checkpoints" / "epoch-002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    metrics = run_fine_tune(tiny_model, mr_data, tmp_path)
    assert "epoch-002.pt is unreadable" in caplog.text
    assert metrics["resumed_from_epoch"] == 1


def test_checkpoints_of_other_settings_are_not_resumed(tiny_model, mr_data, tmp_path, caplog):
    kill_after(1, PARAMS, tiny_model, mr_data, tmp_path)
    changed = {**PARAMS, "training": {**PARAMS["training"], "learning_rate": 5e-4}}
    assert run_fine_tune(tiny_model, mr_data, tmp_path, changed)["resumed_from_epoch"] == 0
    assert "from different settings" in caplog.text
