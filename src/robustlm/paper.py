"""Numbers published by Altinisik et al. (Tables 2-5 and 7) and the paper's setup, for side-by-side reporting."""

from __future__ import annotations

PAPER_MODEL = "bert-base-uncased"
PAPER_EPOCHS = 4
PAPER_HARDWARE = "V100"

#: where a method's own paper trains differently from the main paper (TAT, §3.1: Adamax, 6 epochs, in MT-DNN,
#: whose SMART runs the same way)
METHOD_EPOCHS = {"tat": 6, "smart": 6}
METHOD_OPTIMIZERS = {"tat": "adamax", "smart": "adamax"}
#: RIFT and its comparison methods keep the epoch with the best robust accuracy (RIFT §3.2)
ROBUST_SELECTION = {"adv_base", "rift", "adv_ptwd", "adv_mixout"}

#: settings the papers give, marked in sweep figures (Altinisik et al. §4: S = 3, L2 bound 0.003; TAT and SMART:
#: K = 1, eps = 1e-5, eta = 1e-4, alpha = 1; RIFT: beta 10, alpha 0.1, tau 0.2 on IMDB)
PAPER_SETTINGS = {
    "pgd_at": {"steps": 3, "epsilon": 0.003},
    "lds": {"steps": 3, "epsilon": 0.003},
    "smart": {"steps": 1, "epsilon": 1e-5, "step_size": 1e-4, "adversarial_weight": 1.0},
    "tat": {"steps": 1, "epsilon": 1e-5, "step_size": 1e-4, "adversarial_weight": 1.0},
    "rift": {"beta": 10.0, "alpha": 0.1, "temperature": 0.2},
    "adv_base": {"beta": 10.0},
    "adv_ptwd": {"beta": 10.0, "pretrained_weight_decay": 0.01},
    "adv_mixout": {"beta": 10.0, "mixout_probability": 0.6},
}

#: our defense key -> the paper's row name
ROW_NAMES = {
    "baseline": "BERT",
    "ssmba": "SSMBA",
    "back_translation": "BackTranslation",
    "a2t": "A2T",
    "a2t_mlm": "A2T_MLM",
    "bert_attack": "BERT_Attack",
    "lds": "LDS",
    "pgd_at": "PGD-AT",
    "freelb": "FreeLB",
    "smart": "SMART/VAT",
    "tat": "TAT",
    "adv_base": "Adv-Base",
    "rift": "RIFT",
    "adv_ptwd": "Adv-PTWD",
    "adv_mixout": "Adv-Mixout",
}

#: the main paper's models (Altinisik et al., Table 2): its all-correct intersection is taken over these alone, so
#: that RIFT's or TAT's models in the same run do not change its rows
MAIN_PAPER_DEFENSES = ("baseline", "ssmba", "back_translation", "a2t", "a2t_mlm", "bert_attack", "pgd_at", "lds")

#: our attack key -> the paper's name
ATTACK_NAMES = {
    "textfooler": "TextFooler",
    "a2t": "A2T",
    "bae": "BAE",
    "pso": "PSO",
    "pwws": "PWWS",
    "genetic": "Genetic",
    "bert_attack": "BERT-Attack",
    "a2t_mlm": "A2T-MLM",
}

#: sample size of the paper's attacks (A2T protocol)
PAPER_ATTACK_EXAMPLES = 1000

#: Table 2: attack success rate (%) per attack, dataset and defense ("average" over the four attacks)
TABLE2_ASR = {
    "textfooler": {
        "mr": {
            "baseline": 82.1,
            "a2t": 77.9,
            "a2t_mlm": 79.7,
            "bert_attack": 79.3,
            "ssmba": 79.8,
            "back_translation": 72.8,
            "lds": 88.6,
            "pgd_at": 87.8,
        },
        "imdb": {
            "baseline": 80.6,
            "a2t": 86.5,
            "a2t_mlm": 65.3,
            "bert_attack": 72.8,
            "ssmba": 81.3,
            "back_translation": 45.9,
            "lds": 91.5,
            "pgd_at": 94.7,
        },
    },
    "a2t": {
        "mr": {
            "baseline": 33.8,
            "a2t": 27.6,
            "a2t_mlm": 30.8,
            "bert_attack": 26.5,
            "ssmba": 34.2,
            "back_translation": 30.4,
            "lds": 22.3,
            "pgd_at": 20.9,
        },
        "imdb": {
            "baseline": 59.5,
            "a2t": 51.1,
            "a2t_mlm": 43.7,
            "bert_attack": 49.4,
            "ssmba": 59.2,
            "back_translation": 36.4,
            "lds": 56.9,
            "pgd_at": 43.0,
        },
    },
    "bae": {
        "mr": {
            "baseline": 52.1,
            "a2t": 44.1,
            "a2t_mlm": 45.5,
            "bert_attack": 44.0,
            "ssmba": 49.2,
            "back_translation": 47.1,
            "lds": 55.3,
            "pgd_at": 52.9,
        },
        "imdb": {
            "baseline": 68.8,
            "a2t": 65.0,
            "a2t_mlm": 52.5,
            "bert_attack": 57.9,
            "ssmba": 61.5,
            "back_translation": 41.4,
            "lds": 66.5,
            "pgd_at": 61.0,
        },
    },
    "pso": {
        "mr": {
            "baseline": 79.8,
            "a2t": 75.0,
            "a2t_mlm": 72.7,
            "bert_attack": 74.7,
            "ssmba": 78.1,
            "back_translation": 75.6,
            "lds": 79.8,
            "pgd_at": 80.7,
        },
        "imdb": {
            "baseline": 46.4,
            "a2t": 35.3,
            "a2t_mlm": 35.4,
            "bert_attack": 30.2,
            "ssmba": 41.8,
            "back_translation": 42.8,
            "lds": 70.8,
            "pgd_at": 66.2,
        },
    },
    "average": {
        "mr": {
            "baseline": 62.0,
            "a2t": 56.1,
            "a2t_mlm": 57.2,
            "bert_attack": 56.1,
            "ssmba": 60.3,
            "back_translation": 56.5,
            "lds": 61.5,
            "pgd_at": 60.5,
        },
        "imdb": {
            "baseline": 63.8,
            "a2t": 59.5,
            "a2t_mlm": 49.2,
            "bert_attack": 52.6,
            "ssmba": 61.0,
            "back_translation": 41.6,
            "lds": 71.4,
            "pgd_at": 66.2,
        },
    },
}

#: Table 3: fine-tuning minutes over 4 epochs on a V100, per training set
TABLE3_MINUTES = {
    "imdb": {
        "baseline": 79.0,
        "ssmba": 112.8,
        "back_translation": 210.5,
        "a2t": 1600.5,
        "a2t_mlm": 1494.3,
        "bert_attack": 1495.2,
        "lds": 163.4,
        "pgd_at": 158.2,
    },
    "mr": {
        "baseline": 38.2,
        "ssmba": 46.4,
        "back_translation": 66.0,
        "a2t": 448.5,
        "a2t_mlm": 504.7,
        "bert_attack": 461.5,
        "lds": 64.2,
        "pgd_at": 69.0,
    },
}

#: Table 4: accuracy (%) per training set -> test set
TABLE4_ACCURACY = {
    "imdb": {
        "imdb": {
            "baseline": 93.49,
            "ssmba": 93.49,
            "back_translation": 93.44,
            "a2t": 92.59,
            "a2t_mlm": 92.70,
            "bert_attack": 92.63,
            "lds": 93.24,
            "pgd_at": 93.80,
        },
        "yelp": {
            "baseline": 91.24,
            "ssmba": 91.17,
            "back_translation": 91.50,
            "a2t": 89.97,
            "a2t_mlm": 89.15,
            "bert_attack": 90.04,
            "lds": 92.09,
            "pgd_at": 92.11,
        },
    },
    "mr": {
        "mr": {
            "baseline": 85.27,
            "ssmba": 85.24,
            "back_translation": 84.96,
            "a2t": 83.58,
            "a2t_mlm": 83.90,
            "bert_attack": 84.61,
            "lds": 86.49,
            "pgd_at": 86.59,
        },
        "yelp": {
            "baseline": 87.06,
            "ssmba": 87.72,
            "back_translation": 87.77,
            "a2t": 83.62,
            "a2t_mlm": 81.79,
            "bert_attack": 80.41,
            "lds": 81.80,
            "pgd_at": 88.16,
        },
    },
}


def row_name(defense: str, method: str | None = None) -> str:
    """A table row's model name: the paper's name for a defense; a variant or sweep point adds what sets it apart
    ("PGD-AT @ epsilon=0.01", "RIFT (rift_mi)")."""
    method = method or defense
    name = ROW_NAMES.get(method, method)
    if defense == method:
        return name
    if defense.startswith(f"{method}@"):
        return f"{name} @ {defense.removeprefix(method + '@')}"
    return f"{name} ({defense})"


def training_deviations(train_metrics: dict) -> list[str]:
    """How a fine-tuning run differs from the paper's setup."""
    notes = []
    method = train_metrics["method"]
    if train_metrics["model"] != PAPER_MODEL:
        notes.append(f"model {train_metrics['model']} (paper: {PAPER_MODEL})")
    epochs = METHOD_EPOCHS.get(method, PAPER_EPOCHS)
    if train_metrics["epochs"] != epochs:
        notes.append(f"{train_metrics['epochs']} epoch(s) (paper: {epochs})")
    optimizer = METHOD_OPTIMIZERS.get(method)
    if optimizer and train_metrics["optimizer"] != optimizer:
        notes.append(f"optimizer {train_metrics['optimizer']} (paper: {optimizer})")
    if method in ROBUST_SELECTION:
        selection = train_metrics["selection"]
        notes.append(
            f"kept the epoch with the best robust accuracy on {selection['examples']} validation examples "
            "(paper: on its test set)"
            if "examples" in selection
            else "kept the epoch with the best clean validation accuracy (paper: best robust accuracy)"
        )
    notes += perturbation_deviations(train_metrics)
    augmentation = train_metrics["augmentation"]
    if augmentation is not None:
        notes += augmentation_deviations(augmentation)
    if train_metrics.get("train_size") is not None:
        originals = train_metrics["train_examples"] - (augmentation["augmentations_trained_on"] if augmentation else 0)
        notes.append(f"{originals} training examples (subsample)")
    report = train_metrics["defense_report"]
    if "generations" in report:
        made = sum(generation["successful"] for generation in report["generations"])
        wanted = sum(generation["wanted"] for generation in report["generations"])
        notes.append(
            f"{made} of {wanted} adversarial training examples found (query budget {train_metrics['defense_params']['query_budget']})"
        )
        notes += [f"training attack: {substitution['replacement']}" for substitution in report["substitutions"]]
    return notes


def perturbation_deviations(train_metrics: dict) -> list[str]:
    """The arithmetic a defense with a `precision` option (a small delta's) ran its step in, where it is not the plain
    float32 of a CPU. ASCC's substitutions, words apart, have none: they train in the loop's arithmetic."""
    perturbation = train_metrics.get("perturbation")
    if perturbation is None or "precision" not in train_metrics["defense_params"]:
        return []
    if perturbation["precision"] != "float32":
        return [
            f"perturbation under {perturbation['precision']} autocast: rounding changes the logits about as much "
            "as a small delta does"
        ]
    if not train_metrics["device"].startswith("cpu"):
        return ["defense's steps in float32 (other defenses: bfloat16 autocast), slower than theirs"]
    return []


def augmentation_deviations(augmentation: dict) -> list[str]:
    method, settings = augmentation["method"], augmentation["settings"]["defense_params"]
    notes = []
    if method.get("backend") == "apertium":
        notes.append(
            f"back-translation by rule-based Apertium eng-{method['pivot']}, {method['package']} "
            "(paper: neural MT, not available offline)"
        )
    if "masked_lm" in settings and settings["masked_lm"] != PAPER_MODEL:
        notes.append(f"SSMBA reconstructs with {settings['masked_lm']} (paper: {PAPER_MODEL})")
    notes.append(
        f"+{augmentation['augmentations_trained_on']} augmentations of {augmentation['training_examples']} examples"
    )
    return notes


def attack_deviations(substitutions: list[dict], scored_examples: int, search: dict | None) -> list[str]:
    notes = [substitution["replacement"] for substitution in substitutions]
    if scored_examples != PAPER_ATTACK_EXAMPLES:
        notes.append(f"{scored_examples} attacked examples (paper: {PAPER_ATTACK_EXAMPLES})")
    if search and search["failed_at_query_budget"]:  # cut short, the search is weaker than its max_iters says
        notes.append(
            f"the query budget ({search['query_budget']}) ended failed searches before their "
            f"{search['max_iters']} generations (how many: the attack summary's search)"
        )
    return notes


def evaluation_deviations(eval_metrics: dict, test_set: str) -> list[str]:
    if eval_metrics.get("subsampled", {}).get(test_set):
        return [f"{eval_metrics['examples'][test_set]}-example subsample of the {test_set} test set"]
    return []


#: Table 5: (match, total) of each POS tag's top-neuron words, per defense
TABLE5_ASSOCIATION = {
    "JJ": {"baseline": (2, 15), "lds": (2, 15), "pgd_at": (6, 10)},
    "JJR": {"baseline": (3, 9), "lds": (4, 9), "pgd_at": (7, 13)},
    "MD": {"baseline": (0, 5), "lds": (3, 5), "pgd_at": (2, 5)},
    "VBD": {"baseline": (5, 5), "lds": (0, 5), "pgd_at": (0, 5)},
    ":": {"baseline": (0, 5), "lds": (1, 5), "pgd_at": (3, 5)},
    "VBZ": {"baseline": (4, 10), "lds": (7, 9), "pgd_at": (9, 10)},
    "RB": {"baseline": (9, 10), "lds": (9, 10), "pgd_at": (6, 10)},
    "VBG": {"baseline": (10, 12), "lds": (14, 18), "pgd_at": (15, 15)},
}

#: Table 7: accuracy (%) of a probe on the top-10 ranked neurons only
TABLE7_TOP10_ACCURACY = {"baseline": 34.2, "lds": 38.6, "pgd_at": 35.3}

#: what the paper leaves open about its LCA: recorded next to the numbers it affects
PAPER_TREEBANK = "Penn Treebank (its tagger's training size and epochs are not given)"


def lca_deviations(train_metrics: dict, words_per_neuron: int) -> list[str]:
    """How a POS tagger and its analysis differ from (or fill in) the paper's setup."""
    notes = []
    if train_metrics["model"] != PAPER_MODEL:
        notes.append(f"model {train_metrics['model']} (paper: {PAPER_MODEL})")
    notes.append(
        f"tagger trained on {train_metrics['train_examples']} sentences of the nltk WSJ sample for "
        f"{train_metrics['epochs']} epoch(s) (paper: {PAPER_TREEBANK})"
    )
    notes.append(f"{words_per_neuron} top words per neuron (paper: not given)")
    return notes
