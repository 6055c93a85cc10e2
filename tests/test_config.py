import copy
import functools
import inspect
import json
import re
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, SCHEMA
from robustlm.config import (
    ConfigError,
    attack_params,
    attack_sample_params,
    augment_params,
    canonical,
    defense_entries,
    evaluate_params,
    job_resources,
    lca_extract_params,
    lca_probe_params,
    lca_train_params,
    load_config,
    method_of,
    ood_test_sets,
    sweep_points,
    train_params,
    validate_config,
)
from robustlm.defenses import DEFENSES, build_defense

SHIPPED_CONFIGS = sorted(
    str(path.relative_to(REPO)) for path in [*REPO.glob("config/*.yaml"), *REPO.glob(".test/*/config.yaml")]
)


def test_every_config_is_described_in_config_readme():
    described = (REPO / "config" / "README.md").read_text()
    assert [path for path in SHIPPED_CONFIGS if f"`{path}`" not in described] == []


@pytest.mark.parametrize("path", SHIPPED_CONFIGS)
def test_shipped_configs_are_valid(path):
    config = load_config(REPO / path, SCHEMA)
    assert config["defenses"]
    assert config["training"]["warmup_ratio"] >= 0  # defaults are filled


def test_schema_lists_exactly_the_registered_defenses_with_their_constructors_defaults():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert set(schema["properties"]["defenses"]["properties"]) == set(DEFENSES)
    for name, defense in DEFENSES.items():
        filled = validate_config(
            {
                "model": "m",
                "datasets": {"mr": {}},
                "ood_datasets": {},
                "seeds": [1],
                "training": {"max_length": 16, "batch_size": 1, "epochs": 2, "learning_rate": 1.0},
                "evaluation": {"batch_size": 1},
                "defenses": {name: minimal_settings(schema, name)},
            },
            SCHEMA,
        )["defenses"][name]
        signature = inspect.signature(defense.__init__).parameters
        for key, value in filled.items():
            if key in signature and signature[key].default is not inspect.Parameter.empty:
                assert signature[key].default == value, (name, key)  # a default means the same in code and config


def minimal_settings(schema, name):
    """Some valid value for each required setting of a defense."""
    entry = schema["properties"]["defenses"]["properties"][name]
    if "$ref" in entry:
        entry = schema["$defs"][entry["$ref"].split("/")[-1]]
    values = {"integer": 1, "number": 0.5, "string": "x", "boolean": True}
    return {
        key: values[
            entry["properties"][key]["type"]
            if isinstance(entry["properties"][key]["type"], str)
            else entry["properties"][key]["type"][0]
        ]
        for key in entry.get("required", [])
    }


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["defenses"].update(fgsm={}), ["'defenses.fgsm'", "allowed here: " + ", ".join(sorted(DEFENSES))]),
        (lambda c: c["training"].update(epoch=3), ["'training.epoch'", "epochs"]),
        (lambda c: c["datasets"].update(qqp={}), ["'datasets.qqp'", "imdb, mnli, mr, snli, sst2"]),
        (lambda c: c["training"].update(batch_size="32"), ["'training.batch_size'", "not of type 'integer'"]),
        (lambda c: c["defenses"]["pgd_at"].update(epsilon=-0.1), ["'defenses.pgd_at.epsilon'"]),
        (lambda c: c.update(seeds=[]), ["'seeds'"]),
        (lambda c: c.update(defenses={}), ["'defenses'"]),
        (lambda c: c["training"].pop("epochs"), ["'training'", "'epochs' is a required property"]),
        (
            lambda c: (
                c["defenses"].update(rift={"beta": 1.0, "steps": 1, "step_size": 1.0, "alpha": 0.1})
                or c["lca"].update(defenses=["rift"])
            ),
            ["'lca.defenses'", "['rift'] have no token-level objective"],
        ),
        (lambda c: c["defenses"].update(fgsm={"defense": "pgd"}), ["'defenses.fgsm.defense'", "unknown defense 'pgd'"]),
        (
            lambda c: c["defenses"].update(
                pgd_wide={"defense": "pgd_at", "steps": 3, "epsilon": -1, "step_size": 1, "init_std": 0}
            ),
            ["'defenses.pgd_wide.epsilon'"],
        ),
        (lambda c: c["defenses"].update(Wide={"defense": "pgd_at"}), ["'defenses.Wide'", "variant's name"]),
        (lambda c: c.update(sweeps={"fgsm": {"epsilon": [1, 2]}}), ["'sweeps.fgsm'", "not configured"]),
        (lambda c: c.update(sweeps={"pgd_at": {"epsilon": [0.1, -1]}}), ["'sweeps.pgd_at.epsilon'", "value -1"]),
        (lambda c: c.update(sweeps={"pgd_at": {"epsilom": [0.1, 0.2]}}), ["'sweeps.pgd_at.epsilom'", "epsilom"]),
        (lambda c: c.update(sweeps={"pgd_at": {"epsilon": [0.1, 0.2], "steps": [1, 2]}}), ["'sweeps.pgd_at'"]),
        (lambda c: c.update(sweeps={"pgd_at": {"norm": ["example_l2", "a/b"]}}), ["'sweeps.pgd_at.norm'", "'a/b'"]),
        (lambda c: c["lca"].update(defenses=["baseline", "freelb"]), ["'lca.defenses'", "['freelb'] not configured"]),
        (lambda c: c["lca"]["training"].update(learning_rate=0), ["'lca.training.learning_rate'"]),
        (
            lambda c: c["defenses"]["a2t"]["training"].update(epochs=1),
            ["'defenses.a2t.clean_epochs'", "no adversarial epoch"],
        ),
        (lambda c: c["defenses"]["a2t"]["training"].update(max_length=32), ["'defenses.a2t.training.max_length'"]),
        (lambda c: c["defenses"]["back_translation"].update(backend="google"), ["'defenses.back_translation.backend'"]),
        (lambda c: c["defenses"]["ssmba"].update(noise_probability=0), ["'defenses.ssmba.noise_probability'"]),
        (lambda c: c["defenses"]["pgd_at"].update(epsilon=float("nan")), ["'defenses.pgd_at.epsilon': not a finite"]),
        (lambda c: c["attacks"].update(precision="fp16"), ["'attacks.precision'", "'fp16' is not one of"]),
    ],
)
def test_bad_configs_name_the_key(default_config, mutate, expected):
    mutate(default_config)
    with pytest.raises(ConfigError) as error:
        validate_config(default_config, SCHEMA)
    for fragment in expected:
        assert fragment in str(error.value)


def test_a_defense_overrides_training_settings_for_itself_only(default_config):
    config = validate_config(default_config, SCHEMA)
    a2t = train_params(config, "mr", "a2t", 1)
    baseline = train_params(config, "mr", "baseline", 1)
    assert a2t["training"]["epochs"] == 2 and baseline["training"]["epochs"] == config["training"]["epochs"] == 1
    assert a2t["training"]["learning_rate"] == baseline["training"]["learning_rate"]
    assert "training" not in a2t["defense_params"] and a2t["defense_params"]["query_budget"] == 200


def test_a_variant_and_a_sweep_train_their_own_models_with_their_own_settings(default_config):
    default_config["defenses"]["pgd_token"] = {
        "defense": "pgd_at",
        "steps": 2,
        "epsilon": 0.01,
        "step_size": 0.01,
        "init_std": 0.0,
        "norm": "token_l2",
    }
    default_config["sweeps"] = {
        "pgd_at": {"epsilon": [0.001, 0.003, 0.03]},
        "pgd_token": {"norm": ["token_l2", "elementwise"]},
    }
    config = validate_config(default_config, SCHEMA)
    entries = defense_entries(config)
    assert {"pgd_token", "pgd_at@epsilon=0.001", "pgd_at@epsilon=0.03", "pgd_token@norm=elementwise"} <= set(entries)
    assert "pgd_at@epsilon=0.003" not in entries  # pgd_at's own value: pgd_at's own model
    assert [p["defense"] for p in sweep_points(config) if p["swept"] == "pgd_at"] == [
        "pgd_at@epsilon=0.001",
        "pgd_at",
        "pgd_at@epsilon=0.03",
    ]
    point = train_params(config, "mr", "pgd_at@epsilon=0.03", 1)
    assert point["method"] == "pgd_at" and point["defense"] == "pgd_at@epsilon=0.03"
    assert point["defense_params"] == {**train_params(config, "mr", "pgd_at", 1)["defense_params"], "epsilon": 0.03}
    variant = train_params(config, "mr", "pgd_token", 1)
    assert variant["method"] == method_of(config, "pgd_token") == "pgd_at"
    assert variant["defense_params"]["norm"] == "token_l2" and variant["defense_params"]["precision"] == "float32"
    assert train_params(config, "mr", "pgd_token@norm=elementwise", 1)["defense_params"]["epsilon"] == 0.01
    build_defense("pgd_at", variant["defense_params"])


def test_per_dataset_settings_change_that_datasets_models_only_and_a_sweep_value_wins_over_them(default_config):
    """RIFT tunes beta and alpha per dataset: `per_dataset` overrides an entry for one dataset's models; a sweep of a
    setting so overridden trains every point as its own model, at the swept value on every dataset."""
    default_config["datasets"]["snli"] = {"train_size": 48}
    default_config["ood_datasets"] = {}
    default_config["defenses"] = {
        "rift": {
            "beta": 10.0,
            "steps": 1,
            "step_size": 1.0,
            "alpha": 0.1,
            "per_dataset": {"snli": {"beta": 5.0, "alpha": 0.7, "training": {"epochs": 2}}},
        }
    }
    default_config.pop("lca")
    default_config["sweeps"] = {"rift": {"alpha": [0.1, 0.7]}}
    unchanged = copy.deepcopy(default_config)
    unchanged["defenses"]["rift"].pop("per_dataset")
    config = validate_config(default_config, SCHEMA)
    on_imdb, on_snli = (train_params(config, dataset, "rift", 1) for dataset in ("mr", "snli"))
    assert on_imdb == train_params(validate_config(unchanged, SCHEMA), "mr", "rift", 1)  # nothing reruns for MR
    assert (on_snli["defense_params"]["beta"], on_snli["defense_params"]["alpha"]) == (5.0, 0.7)
    assert on_snli["training"]["epochs"] == 2 and on_imdb["training"]["epochs"] == 1
    assert "per_dataset" not in on_snli["defense_params"]
    points = [point["defense"] for point in sweep_points(config)]
    assert points == ["rift@alpha=0.1", "rift@alpha=0.7"]  # neither is `rift`, whose alpha differs by dataset
    swept = train_params(config, "snli", "rift@alpha=0.1", 1)
    assert (swept["defense_params"]["alpha"], swept["defense_params"]["beta"]) == (0.1, 5.0)


@pytest.mark.parametrize(
    "per_dataset, message",
    [
        ({"imdb": {"beta": 5.0}}, r"'defenses.rift.per_dataset.imdb': not one of the datasets models train on"),
        ({"mr": {"beta": -1.0}}, r"defenses.rift.per_dataset.mr.beta"),
        ({"mr": {"no_such_setting": 1}}, r"defenses.rift.per_dataset.mr"),
    ],
)
def test_a_per_dataset_setting_is_checked_as_its_entrys_are(default_config, per_dataset, message):
    default_config["defenses"]["rift"] = {
        "beta": 10.0,
        "steps": 1,
        "step_size": 1.0,
        "alpha": 0.1,
        "per_dataset": per_dataset,
    }
    with pytest.raises(ConfigError, match=message):
        validate_config(default_config, SCHEMA)


def test_snakemake_stops_before_any_job_with_a_clean_message(tmp_path, default_config):
    default_config["defenses"]["pgd"] = {}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(default_config))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--configfile",
            str(tmp_path / "bad.yaml"),
            "--directory",
            str(tmp_path),
            "-s",
            str(REPO / "Snakefile"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    allowed = ", ".join(sorted(DEFENSES))
    assert f"unknown config key 'defenses.pgd'; allowed here: {allowed}" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_job_params_are_canonical_and_scoped_to_their_defense(default_config):
    config = validate_config(default_config, SCHEMA)
    reordered = validate_config(yaml.safe_load(yaml.safe_dump(config, sort_keys=True)), SCHEMA)
    reordered["defenses"] = dict(reversed(list(reordered["defenses"].items())))
    for defense in config["defenses"]:
        assert canonical(train_params(config, "mr", defense, 1)) == canonical(train_params(reordered, "mr", defense, 1))

    changed = copy.deepcopy(config)
    changed["defenses"]["pgd_at"]["epsilon"] = 0.01
    differs = {
        d
        for d in config["defenses"]
        if canonical(train_params(config, "mr", d, 1)) != canonical(train_params(changed, "mr", d, 1))
    }
    assert differs == {"pgd_at"}
    assert json.loads(canonical(train_params(changed, "mr", "pgd_at", 1)))["defense_params"]["epsilon"] == 0.01


def test_a_config_file_on_the_command_line_replaces_the_default():
    """config/config.yaml's datasets and studies must not leak into a run of another config."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--forceall",
            "--nolock",
            "--configfile",
            "config/defenses_small.yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "dataset=mr, defense=rift" in result.stdout
    assert "defense=ssmba" not in result.stdout and "regression_study" not in result.stdout


def planned_cluster_run(configfile: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--nolock",
            "--profile",
            "profiles/slurm",
            "--configfile",
            configfile,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def job_counts(plan: str) -> dict[str, int]:
    """Snakemake's "Job stats" table: rule -> jobs."""
    table = plan.split("Job stats:")[1].split("total")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_a_cluster_run_of_the_paper_grid_inherits_no_local_profile():
    result = planned_cluster_run("config/paper.yaml")
    assert result.returncode == 0, result.stderr
    assert "Using profile profiles/slurm for setting" in result.stderr
    assert "workflow specific profile" not in result.stderr  # no local settings (cores: all, keep-going: false)


#: what the rehearsal of the paper grid may change: how much, never what
SIZE_KEYS = re.compile(
    r"""^(
    (datasets|ood_datasets)\.\w+\.(train|validation|test)_size
  | defenses\.\w+\.(query_budget|query_batch_size|generation_workers)
  | defenses\.\w+\.training\.(epochs|selection_examples)
  | attacks\.(examples|query_budget|shards|query_batch_size)
  | attacks\.search\.\w+\.(pop_size|max_iters)
  | augmentation\.(shards|batch_size)
  | lca\.(train|validation|test)_size
  | (lca\.)?training\.(max_length|batch_size|epochs)
  | regression_study\.(runs|samples|epochs|switch_epoch)
  | evaluation\.batch_size
  | seeds(\.\d+)?
  | resources\..+
)$""",
    re.VERBOSE,
)


def test_the_rehearsal_of_the_paper_grid_differs_from_it_in_sizes_only():
    paper, rehearsal = (load_config(REPO / path, SCHEMA) for path in ("config/paper.yaml", ".test/paper/config.yaml"))
    leaves = lambda config: {".".join(map(str, path)): value for path, value in _leaf_values(config)}
    paper_leaves, rehearsal_leaves = leaves(paper), leaves(rehearsal)
    changed = {
        key
        for key in paper_leaves.keys() | rehearsal_leaves.keys()
        if paper_leaves.get(key, "absent") != rehearsal_leaves.get(key, "absent")
    }
    assert changed and all(SIZE_KEYS.match(key) for key in changed), sorted(
        k for k in changed if not SIZE_KEYS.match(k)
    )
    assert rehearsal["seeds"] and set(rehearsal["seeds"]) <= set(paper["seeds"])

    plans = [planned_cluster_run(path) for path in ("config/paper.yaml", ".test/paper/config.yaml")]
    assert all(plan.returncode == 0 for plan in plans), [plan.stderr[-2000:] for plan in plans]
    full, small = (job_counts(plan.stdout + plan.stderr) for plan in plans)
    assert len(full) > 10 and full.keys() == small.keys()  # every stage of the grid runs in the rehearsal
    assert sum(small.values()) < sum(full.values())


def _leaf_values(node, prefix=()):
    """(path, value) of every scalar of a config."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, (dict, list)) and value:
            yield from _leaf_values(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _key_paths(node, prefix=()):
    """Every key (and list position) of a config, as a path from the top."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _key_paths(value, (*prefix, key))


ANY_VALUE = st.one_of(
    st.sampled_from([0, -1, float("nan"), float("inf"), "", []]),
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def mutated_configs(draw):
    """The default config with one key replaced by an arbitrary value, deleted, or given an unknown sibling."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    path = draw(st.sampled_from(list(_key_paths(config))))
    kind = draw(st.sampled_from(["replace", "delete", "unknown sibling"]))
    parent = functools.reduce(lambda node, key: node[key], path[:-1], config)
    if kind == "replace":
        parent[path[-1]] = draw(ANY_VALUE)
    elif kind == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent["zz_unknown"] = 1
    else:
        parent.append({"zz_unknown": 1})
    return config, path, kind


def every_job_setting(config):
    """What the Snakefile derives from a validated config for its jobs, defenses built as training builds them."""
    for dataset in config["datasets"]:
        yield evaluate_params(config, dataset)
        for defense in defense_entries(config):
            for seed in config["seeds"]:
                settings = train_params(config, dataset, defense, seed)
                build_defense(settings["method"], settings["defense_params"])
                yield settings
            if DEFENSES[method_of(config, defense)].augments_data:
                yield augment_params(config, dataset, defense)
        if "attacks" in config:
            yield attack_sample_params(config, dataset)
    for attack in config.get("attacks", {}).get("recipes", []):
        yield attack_params(config, attack)
    if "lca" in config:
        yield lca_extract_params(config)
        yield lca_probe_params(config)
        for defense in config["lca"]["defenses"]:
            yield lca_train_params(config, defense, config["seeds"][0])


@settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_a_malformed_config_is_refused_naming_its_key_or_runs(case):
    """Fuzzed configs: either a ConfigError that names the edited key (or the mapping holding it), or a config whose
    every job can be set up; never another exception, never a non-finite number."""
    config, path, kind = case
    try:
        validated = validate_config(config, SCHEMA)
    except ConfigError as error:
        if kind == "unknown sibling":
            assert "zz_unknown" in str(error), (path, str(error))
        else:
            holder = ".".join(map(str, path[:-1])) or "<top level>"
            named = f"'{'.'.join(map(str, path))}'" in str(error) or re.search(rf"'{re.escape(holder)}[.']", str(error))
            assert named, (path, kind, str(error))
        return
    assert kind != "unknown sibling", f"an unknown key beside {path} was accepted"
    json.dumps(validated, allow_nan=False)  # raises on a NaN or infinity that got through
    for job_settings in every_job_setting(validated):
        canonical(job_settings)


def test_a_retried_job_asks_for_more_memory_and_time_and_a_cpu_rule_never_for_a_gpu():
    config = {"resources": {"train": {"mem_mb": 32000}, "lca": {"gpu": 1, "runtime": 90}}}
    train = job_resources(config, "train", mem_mb=16000, runtime=240, gpu=1)
    assert [train["mem_mb"](None, attempt) for attempt in (1, 2, 3)] == [32000, 64000, 96000]
    assert train["runtime"](None, 2) == 480 and train["gpu"] == 1
    probe = job_resources(config, "lca", mem_mb=16000, runtime=60)  # the probe: CPU only, whatever `resources.lca` says
    assert "gpu" not in probe and probe["runtime"](None, 1) == 90


def test_a_dataset_of_ones_own_needs_its_files_and_the_classes_of_every_test_set(default_config, tmp_path):
    from robustlm.requirements import missing

    source = {"files": {"test": str(tmp_path / "test.csv")}, "text": "t", "label": "l", "labels": ["a", "b", "c"]}
    default_config["ood_datasets"]["reviews"] = {"source": source}
    with pytest.raises(ConfigError, match=r"'ood_datasets.reviews': no model can be tested on it: its classes \['a', "):
        validate_config(copy.deepcopy(default_config), SCHEMA)
    del default_config["ood_datasets"]["reviews"]
    default_config["datasets"] = {"reviews": {"source": source}}
    with pytest.raises(
        ConfigError, match=r"'datasets.reviews.source.files': a dataset models train on needs a `train`"
    ):
        validate_config(copy.deepcopy(default_config), SCHEMA)
    source["files"]["train"] = str(tmp_path / "train.csv")
    default_config["ood_datasets"] = {}
    config = validate_config(default_config, SCHEMA)
    assert train_params(config, "reviews", "baseline", 1)["labels"] == ["a", "b", "c"]
    assert [line for line in missing(config, None) if "reviews" in line] == [
        f"{tmp_path / 'train.csv'}: a file of dataset 'reviews', not found",
        f"{tmp_path / 'test.csv'}: a file of dataset 'reviews', not found",
    ]


def test_out_of_distribution_sets_are_tested_by_the_models_with_their_classes():
    config = load_config(REPO / "config/tat.yaml", SCHEMA)
    assert ood_test_sets(config, "mnli") == ["mnli_mismatched", "snli"] and ood_test_sets(config, "sst2") == []
    assert set(evaluate_params(config, "sst2")["test_sizes"]) == {"sst2"}
    assert set(evaluate_params(config, "mnli")["test_sizes"]) == {"mnli", "mnli_mismatched", "snli"}
    config["ood_datasets"]["yelp"] = {}
    assert ood_test_sets(config, "sst2") == ["yelp"]
    del config["datasets"]["sst2"]
    with pytest.raises(ConfigError, match=r"'ood_datasets.yelp': no model can be tested on it"):
        validate_config(config, SCHEMA)


def test_a_population_searchs_settings_reach_only_its_attack():
    config = load_config(REPO / "config/rift.yaml", SCHEMA)
    assert attack_params(config, "genetic")["search"] == {"pop_size": 60, "max_iters": 40}
    assert "search" not in attack_params(config, "pwws")  # other attacks' jobs keep their params
    config["attacks"]["search"] = {"pwws": {"max_iters": 2}}
    with pytest.raises(ConfigError, match="attacks.search"):
        validate_config(config, SCHEMA)
