import json

import pandas as pd
import pytest

from robustlm.tables import build_tables


def write_run(root, dataset, defense, seed, minutes, accuracy, generation_minutes=0.0, defense_report=None):
    run = root / dataset / defense / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "train_metrics.json").write_text(json.dumps({
        "dataset": dataset, "defense": defense, "defense_params": {"query_budget": 200}, "seed": seed,
        "model": "bert-base-uncased", "epochs": 4, "max_length": 512, "train_size": None, "train_examples": 8000,
        "train_seconds": minutes * 60, "adversarial_generation_seconds": generation_minutes * 60,
        "examples_per_second": 100.0, "passes_per_step": 1 if defense == "baseline" else 5, "device": "cuda",
        "augmentation": None, "defense_report": defense_report or {},
    }))
    (run / "eval_metrics.json").write_text(json.dumps({
        "in_distribution": dataset, "accuracy": accuracy, "examples": {name: 1000 for name in accuracy},
        "subsampled": {name: False for name in accuracy},
    }))
    return run


@pytest.fixture
def tables(tmp_path):
    runs = [
        write_run(tmp_path, "mr", "baseline", 1, 10.0, {"mr": 0.85, "yelp": 0.87}),
        write_run(tmp_path, "mr", "baseline", 2, 12.0, {"mr": 0.87, "yelp": 0.85}),
        write_run(tmp_path, "mr", "pgd_at", 1, 33.0, {"mr": 0.86, "yelp": 0.88}),
        write_run(tmp_path, "mr", "pgd_at", 2, 33.0, {"mr": 0.86, "yelp": 0.88}),
    ]
    outputs = {name: tmp_path / "out" / f"{name}.{ext}" for name, ext in [
        ("generalization", "csv"), ("runtime", "csv"), ("paper_vs_ours", "csv"), ("markdown", "md"), ("figure", "png")]}
    build_tables([r / "train_metrics.json" for r in runs], [r / "eval_metrics.json" for r in runs], outputs)
    return outputs


def test_generalization_table_aggregates_seeds(tables):
    table = pd.read_csv(tables["generalization"]).set_index(["defense", "test_set"])
    assert table.loc[("baseline", "mr"), "accuracy_mean"] == pytest.approx(86.0)
    assert table.loc[("baseline", "mr"), "accuracy_std"] == pytest.approx(1.41421, rel=1e-4)
    assert table.loc[("baseline", "mr"), "seeds"] == 2
    assert table.loc[("pgd_at", "yelp"), "paper_accuracy"] == 88.16
    assert table.loc[("pgd_at", "yelp"), "model"] == "PGD-AT"
    assert table.deviations.isna().all()  # the paper's setup


def test_runtime_table_gives_slowdowns_next_to_the_papers(tables):
    table = pd.read_csv(tables["runtime"]).set_index("defense")
    assert table.loc["pgd_at", "slowdown_vs_baseline"] == pytest.approx(3.0)
    assert table.loc["pgd_at", "paper_slowdown_vs_baseline"] == pytest.approx(69.0 / 38.2, rel=1e-4)
    assert table.loc["pgd_at", "passes_per_step"] == 5


def test_runtime_table_shows_the_share_of_adversarial_example_generation(tmp_path):
    report = {"attack": "a2t", "generations": [{"wanted": 100, "successful": 90}, {"wanted": 100, "successful": 100}],
              "substitutions": [{"replacement": "SBERT -> a local sentence encoder"}]}
    runs = [write_run(tmp_path, "mr", "baseline", 1, 10.0, {"mr": 0.85}),
            write_run(tmp_path, "mr", "a2t", 1, 40.0, {"mr": 0.84}, generation_minutes=30.0, defense_report=report)]
    outputs = {name: tmp_path / "out" / f"{name}.{ext}" for name, ext in [
        ("generalization", "csv"), ("runtime", "csv"), ("paper_vs_ours", "csv"), ("markdown", "md"), ("figure", "png")]}
    build_tables([r / "train_metrics.json" for r in runs], [r / "eval_metrics.json" for r in runs], outputs)
    table = pd.read_csv(outputs["runtime"]).set_index("defense")
    assert table.loc["a2t", "generation_share"] == pytest.approx(0.75) and table.loc["baseline", "generation_share"] == 0
    assert table.loc["a2t", "slowdown_vs_baseline"] == pytest.approx(4.0)
    assert "190 of 200 adversarial training examples found (query budget 200)" in table.loc["a2t", "deviations"]
    assert "training attack: SBERT -> a local sentence encoder" in table.loc["a2t", "deviations"]


def test_paper_vs_ours_lists_every_paper_number(tables):
    comparison = pd.read_csv(tables["paper_vs_ours"])
    assert len(comparison) == 4 + 2  # accuracy on mr and yelp per defense, slowdown per defense
    row = comparison[(comparison.model == "BERT") & (comparison.metric == "accuracy % on mr")].iloc[0]
    assert row.paper == 85.27 and row.ours == pytest.approx(86.0) and row.difference == pytest.approx(0.73)
    assert comparison[comparison.metric.str.startswith("run time")].deviations.eq("hardware cuda (paper: V100)").all()
    assert "| BERT" in tables["markdown"].read_text()
    assert tables["figure"].read_bytes()[:4] == b"\x89PNG"
