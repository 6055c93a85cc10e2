"""Numbers published by Altinisik et al. (Tables 3 and 4) and the paper's setup, for side-by-side reporting."""
from __future__ import annotations

PAPER_MODEL = "bert-base-uncased"
PAPER_EPOCHS = 4
PAPER_HARDWARE = "V100"

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

#: Table 3: fine-tuning minutes over 4 epochs on a V100, per training set
TABLE3_MINUTES = {
    "imdb": {"baseline": 79.0, "ssmba": 112.8, "back_translation": 210.5, "a2t": 1600.5, "a2t_mlm": 1494.3,
             "bert_attack": 1495.2, "lds": 163.4, "pgd_at": 158.2},
    "mr": {"baseline": 38.2, "ssmba": 46.4, "back_translation": 66.0, "a2t": 448.5, "a2t_mlm": 504.7,
           "bert_attack": 461.5, "lds": 64.2, "pgd_at": 69.0},
}

#: Table 4: accuracy (%) per training set -> test set
TABLE4_ACCURACY = {
    "imdb": {
        "imdb": {"baseline": 93.49, "ssmba": 93.49, "back_translation": 93.44, "a2t": 92.59, "a2t_mlm": 92.70,
                 "bert_attack": 92.63, "lds": 93.24, "pgd_at": 93.80},
        "yelp": {"baseline": 91.24, "ssmba": 91.17, "back_translation": 91.50, "a2t": 89.97, "a2t_mlm": 89.15,
                 "bert_attack": 90.04, "lds": 92.09, "pgd_at": 92.11},
    },
    "mr": {
        "mr": {"baseline": 85.27, "ssmba": 85.24, "back_translation": 84.96, "a2t": 83.58, "a2t_mlm": 83.90,
               "bert_attack": 84.61, "lds": 86.49, "pgd_at": 86.59},
        "yelp": {"baseline": 87.06, "ssmba": 87.72, "back_translation": 87.77, "a2t": 83.62, "a2t_mlm": 81.79,
                 "bert_attack": 80.41, "lds": 81.80, "pgd_at": 88.16},
    },
}


def row_name(defense: str) -> str:
    return ROW_NAMES.get(defense, defense)


def training_deviations(train_metrics: dict) -> list[str]:
    """How a fine-tuning run differs from the paper's setup."""
    notes = []
    if train_metrics["model"] != PAPER_MODEL:
        notes.append(f"model {train_metrics['model']} (paper: {PAPER_MODEL})")
    if train_metrics["epochs"] != PAPER_EPOCHS:
        notes.append(f"{train_metrics['epochs']} epoch(s) (paper: {PAPER_EPOCHS})")
    if train_metrics.get("train_size") is not None:
        notes.append(f"{train_metrics['train_examples']} training examples (subsample)")
    return notes


def evaluation_deviations(eval_metrics: dict, test_set: str) -> list[str]:
    if eval_metrics.get("subsampled", {}).get(test_set):
        return [f"{eval_metrics['examples'][test_set]}-example subsample of the {test_set} test set"]
    return []
