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
    """.test/tiny/config.yaml (the whole workflow in minutes on CPU), reading `mirror`."""
    return {**yaml.safe_load((REPO / ".test/tiny/config.yaml").read_text()), "mirror": str(mirror)}


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
    from slurm_cluster import SingleNodeCluster, remove_link_left_by_a_killed_run, unavailable_reason

    remove_link_left_by_a_killed_run()
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no SLURM cluster: {reason}")
    with SingleNodeCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
