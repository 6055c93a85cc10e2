import json
import re

import pandas as pd
import pytest

from robustlm.notes import KeyedNotes, split_notes
from robustlm.tables import build_tables


def write_run(
    root,
    dataset,
    defense,
    seed,
    minutes,
    accuracy,
    generation_minutes=0.0,
    defense_report=None,
    provenance=None,
    perturbation=None,
):
    """A run directory; `provenance`: the train and evaluate jobs' records (None: a run from before records)."""
    perturbation = PERTURBATION if defense.startswith("pgd_at") else perturbation
    run = root / dataset / defense / f"seed{seed}"
    run.mkdir(parents=True)
    train, evaluation = ({"provenance": record} for record in provenance) if provenance else ({}, {})
    (run / "train_metrics.json").write_text(
        json.dumps(
            {
                "dataset": dataset,
                "defense": defense,
                "method": defense.split("@")[0],
                "defense_params": {
                    "query_budget": 200,
                    **({"precision": "float32"} if defense.startswith("pgd_at") else {}),
                },
                "seed": seed,
                "optimizer": "adamw",
                "selection": {"by": "clean validation accuracy"},
                "perturbation": perturbation,
                "model": "bert-base-uncased",
                "epochs": 4,
                "max_length": 512,
                "train_size": None,
                "train_examples": 8000,
                "train_seconds": minutes * 60,
                "adversarial_generation_seconds": generation_minutes * 60,
                "examples_per_second": 100.0,
                "passes_per_step": 1 if defense == "baseline" else 5,
                "device": "cuda",
                "augmentation": None,
                "defense_report": defense_report or {},
                **train,
            }
        )
    )
    (run / "eval_metrics.json").write_text(
        json.dumps(
            {
                "in_distribution": dataset,
                "accuracy": accuracy,
                "examples": {name: 1000 for name in accuracy},
                "subsampled": {name: False for name in accuracy},
                **evaluation,
            }
        )
    )
    # the first `accuracy x 1000` examples of each test set right: two runs share their right answers
    pd.concat(
        pd.DataFrame(
            {
                "id": [f"{name}/{i}" for i in range(1000)],
                "test_set": name,
                "label": 1,
                "prediction": [int(i < round(1000 * share)) for i in range(1000)],
                "probability": 0.9,
            }
        )
        for name, share in accuracy.items()
    ).to_parquet(run / "predictions.parquet")
    return run


PERTURBATION = {
    "norm": "example_l2",
    "epsilon": 0.003,
    "precision": "float32",
    "steps_measured": 50,
    "mean_delta_norm": 0.003,
    "clean_loss": 0.37,
    "adversarial_loss": 0.375,
    "start_loss": 0.37,
    "random_delta_loss": 0.37001,
    "mean_abs_logit_change": 0.0097,
    "start_cosine": 0.01,
    "ascent_gain": 500.0,
    "start_share": 0.0,
}


def job_record(settings_hash, commit="abb081d9d9c38d615e0c6bc9906731a17ae28964", torch="2.3.0"):
    """A job's provenance record, as `provenance.job_provenance` makes it."""
    return {
        "settings_hash": settings_hash,
        "seed": 1,
        "code": {"commit": commit, "dirty": False, "robustlm": "0.1.0"},
        "libraries": {"python": "3.11.7", "torch": torch},
        "device": "cuda",
        "host": "node1",
        "utc": "2025-01-01T00:00:00+00:00",
    }


@pytest.fixture
def tables(tmp_path):
    runs = [
        write_run(tmp_path, "mr", "baseline", 1, 10.0, {"mr": 0.85, "yelp": 0.87}),
        write_run(tmp_path, "mr", "baseline", 2, 12.0, {"mr": 0.87, "yelp": 0.85}),
        write_run(tmp_path, "mr", "pgd_at", 1, 33.0, {"mr": 0.86, "yelp": 0.88}),
        write_run(tmp_path, "mr", "pgd_at", 2, 33.0, {"mr": 0.86, "yelp": 0.88}),
    ]
    return build(tmp_path, runs)


def build(root, runs):
    outputs = {
        name: root / "out" / f"{name}.{ext}"
        for name, ext in [
            ("generalization", "csv"),
            ("runtime", "csv"),
            ("paper_vs_ours", "csv"),
            ("paired", "csv"),
            ("markdown", "md"),
            ("figure", "png"),
        ]
    }
    build_tables(
        [r / "train_metrics.json" for r in runs],
        [r / "eval_metrics.json" for r in runs],
        [r / "predictions.parquet" for r in runs],
        outputs,
    )
    return outputs


def test_generalization_table_aggregates_seeds(tables):
    table = pd.read_csv(tables["generalization"]).set_index(["defense", "test_set"])
    assert table.loc[("baseline", "mr"), "accuracy_mean"] == pytest.approx(86.0)
    assert table.loc[("baseline", "mr"), "accuracy_std"] == pytest.approx(1.41421, rel=1e-4)
    assert table.loc[("baseline", "mr"), "seeds"] == 2
    assert table.loc[("pgd_at", "yelp"), "paper_accuracy"] == 88.16
    assert table.loc[("pgd_at", "yelp"), "model"] == "PGD-AT"
    assert table.loc["baseline"].deviations.isna().all()  # the paper's setup
    # on a GPU, PGD-AT's step runs in float32 while the others train under bf16 autocast
    assert table.loc[("pgd_at", "mr"), "deviations"].startswith("defense's steps in float32")


def test_runtime_table_shows_what_each_perturbation_did(tables):
    table = pd.read_csv(tables["runtime"]).set_index("defense")
    assert table.loc["pgd_at", "perturbation_ascent_gain"] == 500.0
    assert table.loc["pgd_at", "perturbation_norm"] == "example_l2"
    assert pd.isna(table.loc["baseline", "perturbation_ascent_gain"])
    markdown = tables["markdown"].read_text()
    section = markdown[markdown.index("## Perturbation diagnostics") : markdown.index("## Paper vs. ours")]
    assert "| mr           | PGD-AT  | example_l2 |" in section and "BERT" not in section


def test_ascc_diagnostics_show_beside_pgd_ats_without_its_precision_note(tmp_path):
    """ASCC has no `precision` option: its substitutions, words apart, train under the loop's bf16 autocast, and its
    row shows what its inner maximisation did without PGD-AT's note on a small delta's rounding."""
    substitutions = {**PERTURBATION, "norm": "token_l2", "epsilon": None, "precision": "bfloat16", "start_share": 0.02}
    runs = [
        write_run(tmp_path, "mr", "baseline", 1, 10.0, {"mr": 0.85}),
        write_run(tmp_path, "mr", "pgd_at", 1, 30.0, {"mr": 0.86}),
        write_run(tmp_path, "mr", "adv_base", 1, 60.0, {"mr": 0.84}, perturbation=substitutions),
    ]
    outputs = build(tmp_path, runs)
    table = pd.read_csv(outputs["runtime"]).set_index("defense")
    assert table.loc["adv_base", "perturbation_start_share"] == 0.02
    assert table.loc["adv_base", "perturbation_norm"] == "token_l2"
    assert (
        "perturbation" not in table.loc["adv_base", "deviations"]
        and "float32" not in table.loc["adv_base", "deviations"]
    )
    assert table.loc["pgd_at", "deviations"].startswith("defense's steps in float32")
    markdown = outputs["markdown"].read_text()
    section = markdown[markdown.index("## Perturbation diagnostics") : markdown.index("## Paper vs. ours")]
    assert "| Adv-Base | token_l2 " in section and "start_share" in section


def test_a_method_trained_otherwise_than_its_paper_says_records_it(tmp_path):
    runs = [
        write_run(tmp_path, "mr", "baseline", 1, 10.0, {"mr": 0.85}),
        write_run(tmp_path, "mr", "tat", 1, 20.0, {"mr": 0.85}),
        write_run(tmp_path, "mr", "rift", 1, 60.0, {"mr": 0.85}),
    ]
    table = pd.read_csv(build(tmp_path, runs)["runtime"]).set_index("defense")
    assert "optimizer adamw (paper: adamax)" in table.loc["tat", "deviations"]
    assert "4 epoch(s) (paper: 6)" in table.loc["tat", "deviations"]
    assert "best clean validation accuracy (paper: best robust accuracy)" in table.loc["rift", "deviations"]


def test_a_sweep_point_is_a_row_of_its_own_after_its_defense(tmp_path):
    runs = [
        write_run(tmp_path, "mr", "pgd_at@epsilon=0.03", 1, 30.0, {"mr": 0.8}),
        write_run(tmp_path, "mr", "pgd_at", 1, 30.0, {"mr": 0.86}),
        write_run(tmp_path, "mr", "baseline", 1, 10.0, {"mr": 0.85}),
    ]
    table = pd.read_csv(build(tmp_path, runs)["generalization"])
    assert table.model.tolist() == ["BERT", "PGD-AT", "PGD-AT @ epsilon=0.03"]
    assert table.paper_accuracy.notna().tolist() == [True, True, False]  # the paper has no number at another epsilon


def test_runtime_table_gives_slowdowns_next_to_the_papers(tables):
    table = pd.read_csv(tables["runtime"]).set_index("defense")
    assert table.loc["pgd_at", "slowdown_vs_baseline"] == pytest.approx(3.0)
    assert table.loc["pgd_at", "paper_slowdown_vs_baseline"] == pytest.approx(69.0 / 38.2, rel=1e-4)
    assert table.loc["pgd_at", "passes_per_step"] == 5


def test_runtime_table_shows_the_share_of_adversarial_example_generation(tmp_path):
    report = {
        "attack": "a2t",
        "generations": [{"wanted": 100, "successful": 90}, {"wanted": 100, "successful": 100}],
        "substitutions": [{"replacement": "SBERT -> a local sentence encoder"}],
    }
    runs = [
        write_run(tmp_path, "mr", "baseline", 1, 10.0, {"mr": 0.85}),
        write_run(tmp_path, "mr", "a2t", 1, 40.0, {"mr": 0.84}, generation_minutes=30.0, defense_report=report),
    ]
    table = pd.read_csv(build(tmp_path, runs)["runtime"]).set_index("defense")
    assert (
        table.loc["a2t", "generation_share"] == pytest.approx(0.75) and table.loc["baseline", "generation_share"] == 0
    )
    assert table.loc["a2t", "slowdown_vs_baseline"] == pytest.approx(4.0)
    assert "190 of 200 adversarial training examples found (query budget 200)" in table.loc["a2t", "deviations"]
    assert "training attack: SBERT -> a local sentence encoder" in table.loc["a2t", "deviations"]


def test_paper_vs_ours_lists_every_paper_number(tables):
    comparison = pd.read_csv(tables["paper_vs_ours"])
    assert len(comparison) == 4 + 2  # accuracy on mr and yelp per defense, slowdown per defense
    row = comparison[(comparison.model == "BERT") & (comparison.metric == "accuracy % on mr")].iloc[0]
    assert row.paper == 85.27 and row.ours == pytest.approx(86.0) and row.difference == pytest.approx(0.73)
    assert (
        comparison[comparison.metric.str.startswith("run time")]
        .deviations.str.endswith("hardware cuda (paper: V100)")
        .all()
    )
    assert "| BERT" in tables["markdown"].read_text()
    assert tables["figure"].read_bytes()[:4] == b"\x89PNG"


def test_provenance_names_the_jobs_behind_each_row(tmp_path):
    runs = [
        write_run(
            tmp_path,
            "mr",
            "baseline",
            seed,
            10.0,
            {"mr": 0.85, "yelp": 0.87},
            provenance=(job_record(f"train{seed}"), job_record("evaluate0")),
        )
        for seed in (1, 2)
    ]
    outputs = build(tmp_path, runs)
    generalization = pd.read_csv(outputs["generalization"])
    assert set(generalization.provenance) == {"train train1, train2 · evaluate evaluate0 · code abb081d"}
    runtime = pd.read_csv(outputs["runtime"])
    assert list(runtime.provenance) == ["train train1, train2 · code abb081d"]  # run time comes from training alone
    comparison = pd.read_csv(outputs["paper_vs_ours"])
    assert comparison.provenance.str.startswith("train train1, train2").all()
    markdown = outputs["markdown"].read_text()
    assert "## Provenance" in markdown and "Mixed" not in markdown
    assert re.search(r"\| train +\| abb081d +\| 3\.11\.7 +\| 2\.3\.0 +\|", markdown)  # its library versions


def test_provenance_flags_tables_from_mixed_code_and_libraries(tmp_path):
    runs = [
        write_run(tmp_path, "mr", "baseline", 1, 10.0, {"mr": 0.85}, provenance=(job_record("a"), job_record("e"))),
        write_run(
            tmp_path,
            "mr",
            "baseline",
            2,
            10.0,
            {"mr": 0.85},
            provenance=(job_record("b", commit="8d25689" + "0" * 33, torch="2.4.0"), job_record("e")),
        ),
        write_run(tmp_path, "mr", "pgd_at", 1, 30.0, {"mr": 0.86}),  # written before results carried provenance
    ]
    outputs = build(tmp_path, runs)
    generalization = pd.read_csv(outputs["generalization"]).set_index("defense")
    assert generalization.loc["baseline", "provenance"] == "train a, b · evaluate e · code abb081d, 8d25689"
    assert (
        generalization.loc["pgd_at", "provenance"] == "train not recorded · evaluate not recorded · code not recorded"
    )
    markdown = outputs["markdown"].read_text()
    assert (
        "**Mixed code versions:** abb081d (train, evaluate); 8d25689 (train); not recorded (train, evaluate)."
        in markdown
    )
    assert "**Mixed library versions:** train jobs ran torch 2.3.0 and 2.4.0." in markdown


def test_keyed_notes_define_each_distinct_note_once_with_the_rows_it_applies_to():
    notes = KeyedNotes()
    assert notes.keys("BERT", "model m (paper: b); 1 epoch(s) (paper: 4)") == "[d1] [d2]"
    assert notes.keys("PGD-AT", "model m (paper: b)", "model m (paper: b); steps in float32") == "[d1] [d3]"
    assert notes.keys("LDS", "") == ""
    assert notes.legend() == [
        "- **[d1]** model m (paper: b) (BERT, PGD-AT)",
        "- **[d2]** 1 epoch(s) (paper: 4) (BERT)",
        "- **[d3]** steps in float32 (PGD-AT)",
    ]
    assert KeyedNotes().legend() == ["None."]


def test_the_markdown_tables_carry_keys_and_define_each_deviation_once(tables):
    markdown = tables["markdown"].read_text()
    comparison = pd.read_csv(tables["paper_vs_ours"])
    distinct = {note for joined in comparison.deviations.dropna() for note in split_notes(joined)}
    assert distinct  # the float32 step and the hardware
    for note in distinct:
        assert markdown.count(note) == 1, note
    # both models ran on a GPU; only PGD-AT's perturbation ran in float32 while the other trained under bf16
    hardware = re.search(r"\*\*\[(d\d+)\]\*\* hardware cuda \(paper: V100\) \(every row\)", markdown).group(1)
    float32 = re.search(r"\*\*\[(d\d+)\]\*\* defense's steps in float32.* \(PGD-AT\)$", markdown, re.M).group(1)
    table3 = markdown[markdown.index("## Table 3") : markdown.index("## Perturbation diagnostics")]
    comparison = markdown[markdown.index("## Paper vs. ours") : markdown.index("## Deviations")]
    assert table3.count(f"[{float32}]") == 1 and comparison.count(f"[{hardware}]") == 2  # the run-time rows


def test_table4_gives_each_accuracy_its_interval_and_pairs_of_models_a_paired_test(tables, tmp_path):
    table = pd.read_csv(tables["generalization"]).set_index(["defense", "test_set"])
    # two seeds (85 % and 87 % of 1,000): mean 86, t(0.975, 1) = 12.706 x sqrt(0.0002 / 2 + binomial 0.000122)
    low, high = table.loc[("baseline", "mr"), ["accuracy_low", "accuracy_high"]]
    margin = 100 * 12.7062 * (0.0001 + (0.85 * 0.15 + 0.87 * 0.13) / 2000) ** 0.5  # 18.86
    assert low == pytest.approx(86 - margin, rel=1e-4) and high == 100.0  # two seeds say little
    assert "| BERT    | 86.0 ± 16.4 (paper 85.27)" in tables["markdown"].read_text()  # half the clipped interval

    paired = pd.read_csv(tables["paired"]).set_index(["test_set", "first", "second"])
    row = paired.loc[("mr", "BERT", "PGD-AT")]  # several seeds: per-example correctness averaged over seeds
    assert row.test == "paired bootstrap" and row.examples == 1000 and row.difference == pytest.approx(0.0)

    single = [
        write_run(tmp_path / "single", "mr", "baseline", 1, 10.0, {"mr": 0.85}),
        write_run(tmp_path / "single", "mr", "pgd_at", 1, 30.0, {"mr": 0.80}),
    ]
    paired = pd.read_csv(build(tmp_path / "single", single)["paired"]).iloc[0]
    # 50 examples right for BERT only, none for PGD-AT only: McNemar's exact p = 2 x 0.5^50
    assert (paired.test, paired.difference, paired.examples) == ("McNemar exact", 5.0, 1000)
    assert paired.p_value == pytest.approx(2 * 0.5**50) and paired.difference_low > 0
    assert "| mr           | mr         | PGD-AT  | -5.0 [" in (tmp_path / "single" / "out" / "markdown.md").read_text()
