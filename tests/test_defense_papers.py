"""RIFT's and TAT's own tables built from Table 2's and Table 4's rows: the paper's numbers attached to the right
rows, the settings RIFT chose per dataset compared, and the tasks the mirror lacks listed."""

import pandas as pd
import pytest

from robustlm import defense_papers

ASCC = {"beta": 10.0, "steps": 3}
RIFT_ON_SNLI = {"beta": 5.0, "alpha": 0.7}  # the settings RIFT chose for SNLI, as rift.yaml's `per_dataset`


def model(method: str, settings: dict, snli: dict | None = None) -> dict:
    """A model's entry as the workflow hands it over: its settings on each dataset."""
    return {"method": method, "settings": {"imdb": settings, "snli": {**settings, **(snli or {})}}}


MODELS = {
    "baseline": model("baseline", {}),
    "adv_base": model("adv_base", ASCC),  # beta 10 on SNLI as well
    "rift": model("rift", {**ASCC, "alpha": 0.1, "conditional": True}, RIFT_ON_SNLI),
    "rift_mi": model("rift", {**ASCC, "alpha": 0.1, "conditional": False}, RIFT_ON_SNLI),
    "rift@alpha=0.7": model("rift", {**ASCC, "alpha": 0.7, "conditional": True}, {"beta": 5.0}),
}


def robustness_rows(datasets=("imdb", "snli")) -> pd.DataFrame:
    rows = [
        {
            "attack": attack,
            "dataset": dataset,
            "defense": defense,
            "model": defense,
            "method": model["method"],
            "robust_accuracy_mean": 50.0 + index,
            "robust_accuracy_low": 40.0,
            "robust_accuracy_high": 60.0,
            "sampled": 100,
            "deviations": "model MiniLM",
        }
        for dataset in datasets
        for attack in ("pwws", "genetic", "average")
        for index, (defense, model) in enumerate(MODELS.items())
    ]
    return pd.DataFrame(rows)


def generalization_rows(pairs, defenses) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "trained_on": trained_on,
                "test_set": test_set,
                "defense": defense,
                "model": defense,
                "accuracy_mean": 80.0,
                "accuracy_low": 75.0,
                "accuracy_high": 85.0,
                "test_examples": 200,
                "deviations": "",
            }
            for trained_on, test_set in pairs
            for defense in defenses
        ]
    )


def test_rifts_robust_accuracy_table_has_the_papers_numbers_and_rifts_per_dataset_settings():
    table = defense_papers.rift_robust_accuracy(
        robustness_rows(), generalization_rows([("imdb", "imdb"), ("snli", "snli")], MODELS), MODELS
    )
    assert len(table) == 2 * 2 * len(MODELS) and "Average" not in set(table.attack)
    row = table.set_index(["dataset", "defense", "attack"])
    assert row.loc[("snli", "rift", "Genetic"), ["paper_robust_accuracy", "paper_std"]].tolist() == [77.5, 0.9]
    assert row.loc[("imdb", "baseline", "PWWS"), "paper_robust_accuracy"] == 40.7
    assert pd.isna(row.loc[("imdb", "rift_mi", "PWWS"), "paper_robust_accuracy"])  # a variant is not RIFT's row
    assert row.loc[("imdb", "rift", "Genetic"), "deviations"] == "model MiniLM"  # RIFT's IMDB settings
    assert row.loc[("snli", "rift", "Genetic"), "deviations"] == "model MiniLM"  # and its SNLI ones, per dataset
    assert row.loc[("snli", "adv_base", "Genetic"), "deviations"] == "beta 10 (RIFT on snli: 5); model MiniLM"
    assert row.loc[("snli", "baseline", "Genetic"), "deviations"] == "model MiniLM"  # no beta to compare
    assert row.loc[("snli", "baseline", "PWWS"), "deviations"].startswith("PWWS substitutes WordNet synonyms")
    assert row.loc[("imdb", "rift", "PWWS"), "clean_accuracy"] == 80.0


def test_rifts_ablation_and_alpha_tables_match_the_paper_by_objective_and_alpha():
    robustness, generalization = robustness_rows(), generalization_rows([("imdb", "imdb"), ("snli", "snli")], MODELS)
    information = defense_papers.rift_mutual_information(robustness, MODELS).set_index(["dataset", "defense", "attack"])
    assert information.loc[("imdb", "rift_mi", "Genetic"), ["maximizing", "paper_robust_accuracy"]].tolist() == [
        "I(S;T)",
        76.1,
    ]
    assert information.loc[("snli", "rift", "Genetic"), "paper_robust_accuracy"] == 77.5  # at SNLI's alpha 0.7
    assert pd.isna(information.loc[("imdb", "rift@alpha=0.7", "Genetic"), "paper_robust_accuracy"])  # IMDB's is 0.1
    alpha = defense_papers.rift_alpha(robustness, generalization, MODELS)
    assert set(alpha.alpha) == {0.1, 0.7}  # I(S;T) models are not on the alpha axis
    alpha = alpha.set_index(["dataset", "defense", "alpha", "metric"])
    assert alpha.loc[("snli", "rift", 0.7, "clean"), "paper_accuracy"] == 80.4
    assert alpha.loc[("snli", "rift@alpha=0.7", 0.7, "clean"), "paper_accuracy"] == 80.4
    assert alpha.loc[("imdb", "rift", 0.1, "PWWS"), "paper_accuracy"] == 70.1
    assert pd.isna(alpha.loc[("imdb", "rift@alpha=0.7", 0.7, "Genetic"), "paper_accuracy"])  # 0.7 tried on SNLI only


def test_tats_tables_list_what_ran_beside_the_paper_and_name_the_tasks_not_run():
    models = {
        name: {"method": name, "settings": {"sst2": {}, "mnli": {}}} for name in ("baseline", "freelb", "smart", "tat")
    }
    pairs = [("sst2", "sst2"), ("mnli", "mnli"), ("mnli", "mnli_mismatched"), ("mnli", "snli")]
    generalization = generalization_rows(pairs, [*models, "pgd_at"])
    glue = defense_papers.tat_glue(generalization, models)
    ran = glue[glue.accuracy.notna()].set_index(["test_set", "defense"])
    assert len(ran) == 3 * 4 and ran.loc[("mnli_mismatched", "tat"), "paper_accuracy"] == 85.9
    assert ran.loc[("sst2", "baseline"), "paper_accuracy"] == 92.9
    not_run = glue[glue.accuracy.isna()]
    assert set(not_run.test_set) == set(defense_papers.TAT_GLUE_MISSING)
    assert (not_run.deviations == defense_papers.NOT_OFFLINE).all()
    zero_shot = defense_papers.tat_zero_shot(generalization, models)
    assert zero_shot.set_index(["test_set", "defense"]).loc[("snli", "tat"), "paper_accuracy"] == 81.0
    assert set(zero_shot[zero_shot.accuracy.isna()].test_set) == {"hans", "scitail", "mednli"}
    assert len(zero_shot) == 4 + 3 * 4


@pytest.mark.parametrize("table", ["RIFT_ROBUST_ACCURACY", "TAT_GLUE", "TAT_ZERO_SHOT"])
def test_the_papers_numbers_are_keyed_by_our_defense_names(table):
    from robustlm.paper import ROW_NAMES

    numbers = getattr(defense_papers, table)
    assert {defense for by_defense in numbers.values() for defense in by_defense} <= set(ROW_NAMES)
