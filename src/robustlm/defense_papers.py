"""RIFT's (Dong et al. 2021, Tables 1-4) and TAT's (Pereira et al. 2021, Tables 1-2) own tables: their published
numbers (BERT-base rows) beside ours, from Table 4's accuracies and Table 2's robust accuracies of the same run."""

from __future__ import annotations

import pandas as pd

from . import paper
from .notes import join_notes
from .robustness import attack_name

#: RIFT Tables 1-2 (BERT-base-uncased): accuracy (%) under attack on 1,000 random test examples, mean and std
RIFT_ROBUST_ACCURACY = {
    "imdb": {
        "baseline": {"genetic": (38.1, 2.5), "pwws": (40.7, 1.1)},
        "adv_base": {"genetic": (74.8, 0.4), "pwws": (68.3, 0.3)},
        "adv_ptwd": {"genetic": (73.9, 0.4), "pwws": (69.1, 0.7)},
        "adv_mixout": {"genetic": (75.4, 0.7), "pwws": (68.8, 0.6)},
        "rift": {"genetic": (77.2, 0.8), "pwws": (70.1, 0.5)},
    },
    "snli": {
        "baseline": {"genetic": (40.1, 0.7), "pwws": (19.4, 0.4)},
        "adv_base": {"genetic": (75.7, 0.5), "pwws": (72.9, 0.2)},
        "adv_ptwd": {"genetic": (75.2, 1.0), "pwws": (72.6, 0.5)},
        "adv_mixout": {"genetic": (76.3, 0.8), "pwws": (73.2, 1.0)},
        "rift": {"genetic": (77.5, 0.9), "pwws": (74.3, 1.1)},
    },
}
RIFT_METHODS = tuple(RIFT_ROBUST_ACCURACY["imdb"])
#: RIFT §3.2: the settings chosen per dataset (beta for every adversarial method, alpha for RIFT, lambda for PTWD)
RIFT_DATASET_SETTINGS = {
    "imdb": {"beta": 10.0, "alpha": 0.1, "pretrained_weight_decay": 0.01, "mixout_probability": 0.6},
    "snli": {"beta": 5.0, "alpha": 0.7, "pretrained_weight_decay": 0.005, "mixout_probability": 0.6},
}
#: RIFT Table 3 (BERT): maximizing I(S;T|Y) (conditional) or I(S;T), at each dataset's alpha
RIFT_MUTUAL_INFORMATION = {
    "imdb": {True: {"genetic": 77.2, "pwws": 70.1}, False: {"genetic": 76.1, "pwws": 69.4}},
    "snli": {True: {"genetic": 77.5, "pwws": 74.3}, False: {"genetic": 76.6, "pwws": 72.1}},
}
OBJECTIVES = {True: "I(S;T|Y)", False: "I(S;T)"}
#: RIFT Table 4 (BERT): alpha -> vanilla accuracy and accuracy under Genetic and PWWS
RIFT_ALPHA = {
    "imdb": {0.0: (78.1, 74.8, 68.3), 0.05: (78.4, 76.5, 69.2), 0.1: (78.3, 77.2, 70.1), 0.3: (78.3, 76.2, 69.5)},
    "snli": {0.0: (79.4, 75.7, 72.9), 0.5: (80.0, 76.9, 73.8), 0.7: (80.4, 77.5, 74.3), 1.0: (80.6, 77.3, 73.2)},
}
CLEAN = "clean"
ALPHA_COLUMNS = (CLEAN, "genetic", "pwws")

#: TAT Table 1 (dev, BERT-base): accuracy (%) per GLUE task we can run, by our test-set name
TAT_GLUE = {
    "mnli": {"baseline": 84.5, "freelb": 85.4, "smart": 85.5, "tat": 86.2},
    "mnli_mismatched": {"baseline": 84.4, "freelb": 85.5, "smart": 85.7, "tat": 85.9},
    "sst2": {"baseline": 92.9, "freelb": 93.2, "smart": 93.3, "tat": 93.6},
}
#: the other GLUE tasks of TAT's Table 1 (TAT's own dev score): none of their data is in the mirror
TAT_GLUE_MISSING = {"qqp": 91.8, "rte": 72.6, "qnli": 92.2, "mrpc": 88.2, "cola": 58.5, "stsb": 90.8}
TAT_METHODS = tuple(TAT_GLUE["sst2"])
#: TAT Table 2: zero-shot accuracy (%) of MNLI-trained BERT-base models
TAT_ZERO_SHOT = {
    "snli": {"baseline": 80.1, "freelb": 80.5, "smart": 80.8, "tat": 81.0},
    "hans": {"baseline": 55.4, "freelb": 62.0, "smart": 62.5, "tat": 65.8},
    "scitail": {"baseline": 77.3, "freelb": 78.6, "smart": 78.5, "tat": 78.8},
    "mednli": {"baseline": 43.2, "freelb": 56.8, "smart": 58.1, "tat": 60.6},
}
NOT_OFFLINE = "not in the mirror nor a registered dataset: not run"
#: RIFT §3.1 runs both attacks over Alzantot et al.'s substitution set; TextAttack's PWWS recipe swaps WordNet synonyms
PWWS_SUBSTITUTIONS = "PWWS substitutes WordNet synonyms (RIFT: Alzantot et al.'s counter-fitted set, as Genetic)"


def _clean_accuracy(generalization: pd.DataFrame) -> pd.DataFrame:
    in_distribution = generalization[generalization.test_set == generalization.trained_on]
    return in_distribution.rename(columns={"trained_on": "dataset"})[
        ["dataset", "defense", "accuracy_mean", "accuracy_low", "accuracy_high"]
    ]


def _setting_notes(dataset: str, method: str, settings: dict) -> str:
    """How a model's settings differ from those RIFT chose for `dataset`."""
    chosen = RIFT_DATASET_SETTINGS.get(dataset, {})
    return join_notes(
        *(
            f"{name} {settings[name]:g} (RIFT on {dataset}: {chosen[name]:g})"
            for name in ("beta", "alpha", "pretrained_weight_decay", "mixout_probability")
            if name in settings and name in chosen and settings[name] != chosen[name] and method != "baseline"
        )
    )


def _of_methods(rows: pd.DataFrame, models: dict[str, dict], methods: tuple[str, ...]) -> pd.DataFrame:
    """The rows of the run's models that train with one of `methods`."""
    return rows.loc[rows.defense.map(lambda d: models.get(d, {}).get("method") in methods).astype(bool)]


def _robust(robustness: pd.DataFrame, models: dict[str, dict], methods: tuple[str, ...]) -> pd.DataFrame:
    rows = _of_methods(robustness[robustness.attack != "average"], models, methods)
    return rows.assign(settings=[models[d]["settings"][dataset] for d, dataset in zip(rows.defense, rows.dataset)])


def rift_robust_accuracy(
    robustness: pd.DataFrame, generalization: pd.DataFrame, models: dict[str, dict]
) -> pd.DataFrame:
    """RIFT Tables 1-2: accuracy under each attack on the whole random sample, per dataset and model, and clean
    accuracy, beside RIFT's BERT numbers (for the models under their methods' own names)."""
    rows = _robust(robustness, models, RIFT_METHODS).merge(_clean_accuracy(generalization), on=["dataset", "defense"])
    published = [
        RIFT_ROBUST_ACCURACY.get(r.dataset, {}).get(r.defense, {}).get(r.attack, (None, None))
        for r in rows.itertuples()
    ]
    return pd.DataFrame(
        {
            "dataset": rows.dataset,
            "model": rows.model,
            "defense": rows.defense,
            "attack": rows.attack.map(attack_name),
            "clean_accuracy": rows.accuracy_mean,
            "robust_accuracy": rows.robust_accuracy_mean,
            "robust_accuracy_low": rows.robust_accuracy_low,
            "robust_accuracy_high": rows.robust_accuracy_high,
            "examples": rows.sampled.astype(int),
            "paper_robust_accuracy": pd.Series([mean for mean, _ in published], index=rows.index, dtype=float),
            "paper_std": pd.Series([std for _, std in published], index=rows.index, dtype=float),
            "deviations": [
                join_notes(
                    _setting_notes(r.dataset, models[r.defense]["method"], r.settings),
                    PWWS_SUBSTITUTIONS if r.attack == "pwws" else "",
                    r.deviations,
                )
                for r in rows.itertuples()
            ],
        }
    ).reset_index(drop=True)


def rift_mutual_information(robustness: pd.DataFrame, models: dict[str, dict]) -> pd.DataFrame:
    """RIFT Table 3: RIFT maximizing I(S;T|Y) against the I(S;T) ablation, every RIFT model of the run; the paper's
    number where the model's alpha is the one RIFT chose for the dataset."""
    rows = _robust(robustness, models, ("rift",))
    conditional = rows.settings.map(lambda s: s["conditional"])
    alpha = rows.settings.map(lambda s: s["alpha"])
    return (
        pd.DataFrame(
            {
                "dataset": rows.dataset,
                "defense": rows.defense,
                "maximizing": conditional.map(OBJECTIVES),
                "alpha": alpha,
                "attack": rows.attack.map(attack_name),
                "robust_accuracy": rows.robust_accuracy_mean,
                "robust_accuracy_low": rows.robust_accuracy_low,
                "robust_accuracy_high": rows.robust_accuracy_high,
                "examples": rows.sampled.astype(int),
                "paper_robust_accuracy": pd.Series(
                    [
                        RIFT_MUTUAL_INFORMATION.get(r.dataset, {}).get(c, {}).get(r.attack)
                        if a == RIFT_DATASET_SETTINGS.get(r.dataset, {}).get("alpha")
                        else None
                        for r, c, a in zip(rows.itertuples(), conditional, alpha)
                    ],
                    index=rows.index,
                    dtype=float,
                ),
            }
        )
        .sort_values(["dataset", "attack", "maximizing"])
        .reset_index(drop=True)
    )


def rift_alpha(robustness: pd.DataFrame, generalization: pd.DataFrame, models: dict[str, dict]) -> pd.DataFrame:
    """RIFT Table 4: clean and robust accuracy against alpha, over the run's RIFT models maximizing I(S;T|Y) (a
    sweep's points, variants), one row per dataset, alpha and metric, beside the paper's at the alphas it tried."""
    rows = _robust(robustness, models, ("rift",))
    rows = rows.loc[rows.settings.map(lambda s: s["conditional"]).astype(bool)]
    alpha = rows.settings.map(lambda s: s["alpha"])
    robust = pd.DataFrame(
        {
            "dataset": rows.dataset,
            "defense": rows.defense,
            "alpha": alpha,
            "metric": rows.attack,
            "accuracy": rows.robust_accuracy_mean,
            "accuracy_low": rows.robust_accuracy_low,
            "accuracy_high": rows.robust_accuracy_high,
        }
    )
    clean = (
        _clean_accuracy(generalization)
        .merge(robust[["dataset", "defense", "alpha"]].drop_duplicates(), on=["dataset", "defense"])
        .rename(columns=lambda c: c.replace("accuracy_mean", "accuracy"))
        .assign(metric=CLEAN)
    )
    table = pd.concat([clean, robust], ignore_index=True)
    table["paper_accuracy"] = pd.Series(
        [
            RIFT_ALPHA.get(r.dataset, {}).get(r.alpha, (None,) * 3)[ALPHA_COLUMNS.index(r.metric)]
            if r.metric in ALPHA_COLUMNS
            else None
            for r in table.itertuples()
        ],
        dtype=float,
    )
    table["metric"] = table.metric.map(lambda m: m if m == CLEAN else attack_name(m))
    columns = ["dataset", "defense", "alpha", "metric", "accuracy", "accuracy_low", "accuracy_high", "paper_accuracy"]
    return table[columns].sort_values(["dataset", "metric", "alpha"]).reset_index(drop=True)


def _accuracy_rows(rows: pd.DataFrame, published: dict[str, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trained_on": rows.trained_on,
            "test_set": rows.test_set,
            "model": rows.model,
            "defense": rows.defense,
            "accuracy": rows.accuracy_mean,
            "accuracy_low": rows.accuracy_low,
            "accuracy_high": rows.accuracy_high,
            "examples": rows.test_examples.astype("Int64"),
            "paper_accuracy": pd.Series(
                [published.get(r.test_set, {}).get(r.defense) for r in rows.itertuples()], index=rows.index, dtype=float
            ),
            "deviations": rows.deviations,
        }
    )


def _missing_rows(published: dict[str, dict[str, float]], trained_on: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "trained_on": trained_on,
                "test_set": test_set,
                "model": paper.ROW_NAMES[method],
                "defense": method,
                "paper_accuracy": accuracy,
                "deviations": NOT_OFFLINE,
            }
            for test_set, by_method in published.items()
            for method, accuracy in by_method.items()
        ]
    )


def tat_glue(generalization: pd.DataFrame, models: dict[str, dict]) -> pd.DataFrame:
    """TAT Table 1: dev accuracy of standard fine-tuning, FreeLB, SMART/VAT and TAT on the GLUE tasks the mirror
    holds (SST-2, MNLI matched and mismatched), and the tasks it does not, with TAT's score only."""
    rows = _of_methods(generalization, models, TAT_METHODS)
    rows = rows[rows.test_set.isin(TAT_GLUE) & rows.trained_on.isin(("sst2", "mnli"))]
    missing = _missing_rows({task: {"tat": score} for task, score in TAT_GLUE_MISSING.items()}, "")
    missing["trained_on"] = missing.test_set
    return pd.concat([_accuracy_rows(rows, TAT_GLUE), missing], ignore_index=True)


def tat_zero_shot(generalization: pd.DataFrame, models: dict[str, dict]) -> pd.DataFrame:
    """TAT Table 2: MNLI-trained models tested on other NLI sets (SNLI here; HANS, SciTail and MedNLI are in
    neither the mirror nor the registry, listed with the paper's numbers only)."""
    rows = _of_methods(generalization, models, TAT_METHODS)
    rows = rows[(rows.trained_on == "mnli") & ~rows.test_set.isin(("mnli", "mnli_mismatched"))]
    run = set(rows.test_set)
    missing = {name: numbers for name, numbers in TAT_ZERO_SHOT.items() if name not in run}
    return pd.concat([_accuracy_rows(rows, TAT_ZERO_SHOT), _missing_rows(missing, "mnli")], ignore_index=True)
