"""The benchmark scripts run; the speeds they print are never asserted."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
FINETUNE_THROUGHPUT = BENCHMARKS / "finetune_throughput.py"


def run_script(script: Path, *args: str, mirror: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ROBUSTLM_MIRROR": str(mirror)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_finetune_throughput_smoke_run_prints_the_reference_and_every_default_defense(mirror, tmp_path):
    lines = run_script(FINETUNE_THROUGHPUT, "--smoke", "--csv", str(tmp_path / "rows.csv"), mirror=mirror).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("defense"))
    columns = lines[header].split()
    rows = {line.split()[0]: dict(zip(columns, line.split())) for line in lines[header + 1 :]}
    assert list(rows) == ["reference", *runpy.run_path(str(FINETUNE_THROUGHPUT))["DEFAULT_DEFENSES"]]
    assert rows["reference"]["slowdown"] == "1.00x"
    for row in rows.values():
        examples_per_second = float(row["examples/s"])
        assert examples_per_second > 0
        # every sequence is exactly --smoke's 32 tokens; examples/s is printed to 0.1
        assert float(row["tokens/s"]) == pytest.approx(32 * examples_per_second, abs=32 * 0.05 + 0.5)
    written = pd.read_csv(tmp_path / "rows.csv")  # what paper_grid_estimate.py reads
    assert written.defense.tolist() == list(rows) and set(written.seq_len) == {32}
    assert written.examples_per_second.round(1).tolist() == [float(row["examples/s"]) for row in rows.values()]


def test_the_three_benchmarks_chain_into_a_grid_estimate(mirror, tiny_model, tmp_path):
    """Smoke sizes: both throughput scripts write their CSVs, the estimate reads them with a grid config."""
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    from robustlm import datasets

    victim = tmp_path / "victim"  # the tiny model with the 512 positions stock TextAttack pads every query to
    BertForSequenceClassification(AutoConfig.from_pretrained(tiny_model, max_position_embeddings=512)).save_pretrained(
        victim
    )
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(victim)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in ("mr", "yelp"):
        datasets.prepare(datasets.get(name), mirror, seed=0)[0].to_parquet(data_dir / f"{name}.parquet")
    run_script(FINETUNE_THROUGHPUT, "--smoke", "--csv", str(tmp_path / "finetune.csv"), mirror=mirror)
    printed = run_script(
        BENCHMARKS / "attack_throughput.py",
        "--model",
        str(victim),
        "--data",
        str(data_dir / "mr.parquet"),
        "--recipe",
        "textfooler",
        "--examples",
        "2",
        "--query-budget",
        "20",
        "--csv",
        str(tmp_path / "attacks.csv"),
        mirror=mirror,
    )
    assert "identical outcome and perturbed text on 2/2 examples" in printed
    attacks = pd.read_csv(tmp_path / "attacks.csv")
    assert attacks.runner.tolist() == ["stock TextAttack", "robustlm"] and set(attacks.dataset) == {"mr"}

    grid = {
        **GRID,
        "datasets": {"mr": {"train_size": 40, "validation_size": 10, "test_size": 20}},
        "ood_datasets": {"yelp": {"test_size": 10}},
        "defenses": {"baseline": {}, "pgd_at": GRID["defenses"]["pgd_at"]},
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    printed = run_script(
        BENCHMARKS / "paper_grid_estimate.py",
        "--finetune",
        str(tmp_path / "finetune.csv"),
        "--attacks",
        str(tmp_path / "attacks.csv"),
        "--config",
        str(tmp_path / "grid.yaml"),
        "--data-dir",
        str(data_dir),
        "--output",
        str(tmp_path / "estimate.md"),
        mirror=mirror,
    )
    assert (tmp_path / "estimate.md").read_text().strip() == printed.strip()
    for stage in ("fine-tuning", "evaluation", "attacks", "total"):
        assert f"| {stage}" in printed


GRID = {
    "model": "tiny",
    "data_seed": 0,
    "datasets": {"mr": {"train_size": 100}},
    "ood_datasets": {"yelp": {}},
    "defenses": {
        "baseline": {},
        "pgd_at": {"steps": 3, "epsilon": 0.003, "step_size": 0.05, "init_std": 1e-5},
        "a2t": {"adversarial_fraction": 0.1, "clean_epochs": 1, "training": {"epochs": 2}},
    },
    "attacks": {"recipes": ["textfooler"], "examples": 10},
    "seeds": [1, 2],
    "training": {"max_length": 64, "batch_size": 16, "epochs": 1, "learning_rate": 1e-4},
    "evaluation": {"batch_size": 64},
}
# (examples, mean tokens) per split, as split_statistics counts them
GRID_STATS = {
    ("mr", "train"): (100, 20.0),
    ("mr", "validation"): (10, 20.0),
    ("mr", "test"): (50, 20.0),
    ("yelp", "test"): (30, 40.0),
}
FINETUNE_ROWS = [  # the baseline at two lengths: the one nearest the data's 20 tokens must be used
    {"defense": "baseline", "seq_len": 32, "tokens_per_second": 1000.0, "device": "test"},
    {"defense": "baseline", "seq_len": 512, "tokens_per_second": 10.0, "device": "test"},
    {"defense": "pgd_at", "seq_len": 32, "tokens_per_second": 250.0, "device": "test"},
]
ATTACK_ROWS = [  # the stock TextAttack rows must not count
    {"runner": "robustlm", "recipe": "textfooler", "dataset": "mr", "seconds": 20.0, "examples": 10, "successes": 5},
    {
        "runner": "stock TextAttack",
        "recipe": "textfooler",
        "dataset": "mr",
        "seconds": 999.0,
        "examples": 10,
        "successes": 5,
    },
    {"runner": "robustlm", "recipe": "a2t", "dataset": "mr", "seconds": 10.0, "examples": 10, "successes": 5},
]


@pytest.fixture(scope="module")
def grid_estimate():
    return runpy.run_path(str(BENCHMARKS / "paper_grid_estimate.py"))


def grid_config():
    from robustlm.config import validate_config

    return validate_config(json.loads(json.dumps(GRID)), REPO / "workflow" / "schemas" / "config.schema.yaml")


def test_grid_estimate_scales_measured_rates_by_the_grid(grid_estimate):
    jobs = grid_estimate["estimate"](grid_config(), GRID_STATS, pd.DataFrame(FINETUNE_ROWS), pd.DataFrame(ATTACK_ROWS))
    seconds = jobs.set_index(["stage", "defense"]).seconds
    validation = 10 * 20 / 3000  # forward passes at three times the baseline's training rate
    assert seconds["fine-tuning", "baseline"] == pytest.approx(2 * (100 * 20 / 1000 + validation))
    assert seconds["fine-tuning", "pgd_at"] == pytest.approx(2 * (100 * 20 / 250 + validation))
    # a2t: two epochs over 100 examples plus 10 adversarial ones in its one adversarial epoch, at the baseline's rate
    assert seconds["fine-tuning", "a2t"] == pytest.approx(2 * (210 * 20 / 1000 + 2 * validation))
    # 10 successes at a 50% success rate, 1 s per attacked example
    assert seconds["AT-IP generation", "a2t"] == pytest.approx(2 * 20.0)
    assert seconds["evaluation", "pgd_at"] == pytest.approx(2 * (50 * 20 + 30 * 40) / 3000)
    assert seconds["attacks", "baseline"] == pytest.approx(2 * 10 * 2.0)
    table = grid_estimate["stage_table"](jobs)
    assert table.loc["total", "device_hours"] == pytest.approx(jobs.seconds.sum() / 3600)
    assert table.loc["attacks", "jobs"] == 3


def test_grid_estimate_names_the_missing_measurement(grid_estimate):
    without_pgd_at = pd.DataFrame([row for row in FINETUNE_ROWS if row["defense"] != "pgd_at"])
    with pytest.raises(SystemExit, match="--defenses pgd_at"):
        grid_estimate["estimate"](grid_config(), GRID_STATS, without_pgd_at, pd.DataFrame(ATTACK_ROWS))
    without_a2t = pd.DataFrame([row for row in ATTACK_ROWS if row["recipe"] != "a2t"])
    with pytest.raises(SystemExit, match="no attack measurement of a2t on mr"):
        grid_estimate["estimate"](grid_config(), GRID_STATS, pd.DataFrame(FINETUNE_ROWS), without_a2t)
