"""The rehearsal of the paper job: `.test/paper/config.yaml` (config/paper.yaml with only its sizes shrunk) through
`--profile profiles/slurm` on the one-node cluster, at both kinds of site, every download answered by stand-ins on
the loopback: the publishers (datasets, nltk's packages, TextAttack's bucket) and a Hugging Face hub serving tiny
models under the stock names.

- air-gapped: `robustlm-mirror build` fills a mirror from the stand-ins on the "login node"; the run then reads only
  the mirror, with the hub switched off and every download pointed at a closed port;
- online: no mirror; the jobs download from the stand-ins into their caches.

The air-gapped run asks for a slice of the grid that holds each of its parts once, not the cross product: every
defense trained and evaluated (MR, and Yelp out of distribution), IMDB's baseline, every attack recipe on MR's
baseline, the LCA tables and Table 1: 66 jobs, ~15 minutes on 2 CPUs. The online run asks for each resource the grid
reads once, which is all that differs between the two kinds of site: the defenses that read a resource of their own,
IMDB's baseline, every recipe, one POS tagger's analysis (the treebank): 42 jobs. The whole grid is 512 jobs, each
starting Snakemake twice and then a process importing torch: 63 minutes air-gapped on 2 CPUs, too long for CI beside
the other tests. `ROBUSTLM_REHEARSAL=whole-grid` makes the air-gapped run ask for it (`rule all`: every table and the
report), by hand: `ROBUSTLM_REHEARSAL=whole-grid .venv/bin/python -m pytest tests/test_rehearsal.py -k air_gapped`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from conftest import REPO, tiny_marian
from hub_standin import HubStandIn
from robustlm.attacks import FLAIR_UPOS_TAGGER
from slurm_cluster import STATUS_POLLING
from test_sources import SERVED, Publishers, closed_port_url, publish_attack_resources
from textattack_standin import flair_upos_tagger

pytestmark = [pytest.mark.rehearsal, pytest.mark.slurm]
REHEARSAL = REPO / ".test/paper/config.yaml"
#: what the paper job reads from the hub: BERTs, the MarianMT pair and flair's POS tagger
STOCK_BERTS = (
    "bert-base-uncased",
    "sentence-transformers/distiluse-base-multilingual-cased-v1",
    "sentence-transformers/stsb-distilbert-base",
)
STOCK_MARIANS = ("Helsinki-NLP/opus-mt-en-de", "Helsinki-NLP/opus-mt-de-en")
IMDB_REPACK = "datasets/imdb/aclImdb_labelled.tar.gz"  # the official tarball is too big to serve: a site's own copy
#: the air-gapped run asks for the whole grid instead of its slice (module docstring)
WHOLE_GRID = os.environ.get("ROBUSTLM_REHEARSAL") == "whole-grid"
CLUSTER_RUN_SECONDS = 4 * 3600 if WHOLE_GRID else 3600


def tiny_bert(path: Path, tiny_model: Path) -> Path:
    """A tiny pretrained-style BERT: an MLM head and no task head, as bert-base-uncased, and its 512 positions
    (BERT-Attack's masked LM pads its inputs to 512)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

    config = AutoConfig.from_pretrained(tiny_model)
    config.max_position_embeddings = 512
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def internet(tmp_path_factory, mirror, tiny_model):
    """Stand-ins for every server the paper job downloads from."""
    import torch
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("internet")
    publishers = Publishers(root / "published")
    for file in SERVED:
        publishers.publish(file, mirror / file.relative_path)
    publish_attack_resources(publishers, mirror, root)
    bert = tiny_bert(root / "bert", tiny_model)
    torch.manual_seed(0)
    marian = tiny_marian(root / "marian", AutoTokenizer.from_pretrained(tiny_model))
    tagger = flair_upos_tagger(root / "flair")
    with HubStandIn(
        {**{name: bert for name in STOCK_BERTS}, **{name: marian for name in STOCK_MARIANS}, FLAIR_UPOS_TAGGER: tagger}
    ) as hub:
        yield SimpleNamespace(publishers=publishers, hub=hub)
    publishers.server.shutdown()


def site(workdir: Path, **variables: str) -> dict[str, str]:
    """A login node's environment: its own home and caches, no mirror unless given."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("ROBUSTLM_MIRROR", "HF_HUB_OFFLINE", "NLTK_DATA", "TA_CACHE_DIR")
    }
    environment.update(HOME=str(workdir / "home"), HF_HOME=str(workdir / "hf"), ROBUSTLM_CACHE=str(workdir / "cache"))
    return {**environment, **variables}


#: the defenses that read a resource of their own (a masked LM, the MarianMT pair, the attack recipes' resources in
#: training, the neighbour lists); the others read only the model and the data, as the baseline does
RESOURCE_READING_DEFENSES = ("baseline", "ssmba", "back_translation", "a2t", "a2t_mlm", "bert_attack", "rift")


def grid_slice(everything: bool) -> list[str]:
    """Each defense, attack recipe, dataset, analysis and resource of the rehearsal's grid, once (module docstring);
    or, not `everything`, each resource the grid reads, once: what differs between the two kinds of site."""
    config = yaml.safe_load(REHEARSAL.read_text())
    runs = "results/runs/{}/{}/seed" + str(config["seeds"][0])
    defenses = config["defenses"] if everything else RESOURCE_READING_DEFENSES
    return [
        *(f"{runs.format('mr', defense)}/predictions.parquet" for defense in defenses),
        f"{runs.format('imdb', 'baseline')}/predictions.parquet",
        *(
            f"{runs.format('mr', 'baseline')}/attacks/{attack}/attack_summary.json"
            for attack in config["attacks"]["recipes"]
        ),
        *(
            ["results/tables/table5_lca_association.csv", "results/regression/table1.csv"]
            if everything
            else [f"results/lca/baseline/seed{config['seeds'][0]}/lca.json"]  # the treebank
        ),
    ]


def cluster_run(workdir: Path, environment: dict[str, str], targets: list[str]) -> subprocess.CompletedProcess:
    """The paper job's command, with the rehearsal's config and no account (the test cluster has none)."""
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
            str(REHEARSAL),
            "--profile",
            str(REPO / "profiles" / "slurm"),
            "--slurm-no-account",
            *STATUS_POLLING,
            "--max-threads",
            "1",  # the small jobs in parallel, a CPU each
            # fewer job slots than ready jobs (MR's baseline's 7 attacks), as the grid's 210 attacks have under the
            # profile's 50: the plugin's job arrays hung there (profiles/slurm/config.yaml)
            "--jobs",
            "4",
            *targets,
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=CLUSTER_RUN_SECONDS,
    )


@pytest.fixture(scope="module")
def air_gapped_run(internet, slurm_cluster, mirror, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("air-gapped")
    built = workdir / "robustlm-mirror"
    (built / IMDB_REPACK).parent.mkdir(parents=True)
    (built / IMDB_REPACK).symlink_to(mirror / IMDB_REPACK)
    login_node = site(workdir, HF_ENDPOINT=internet.hub.url, ROBUSTLM_DOWNLOAD_PREFIX=internet.publishers.url)
    build = subprocess.run(
        [sys.executable, "-m", "robustlm.mirror_builder", "build", str(built), "--configfile", str(REHEARSAL)],
        capture_output=True,
        text=True,
        env=login_node,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    served = len(internet.publishers.requests), len(internet.hub.downloads)
    nowhere = closed_port_url()
    result = cluster_run(
        workdir,
        site(
            workdir,
            ROBUSTLM_MIRROR=str(built),
            HF_HUB_OFFLINE="1",
            HF_ENDPOINT=nowhere,
            ROBUSTLM_DOWNLOAD_PREFIX=nowhere,
        ),
        [] if WHOLE_GRID else grid_slice(everything=True),  # none: `rule all`
    )
    assert result.returncode == 0, result.stderr[-6000:] + slurm_cluster.log("slurmctld")[-2000:]
    assert (len(internet.publishers.requests), len(internet.hub.downloads)) == served  # nothing downloaded
    return workdir


@pytest.fixture(scope="module")
def online_run(internet, slurm_cluster, mirror, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("online")
    (workdir / "cache" / IMDB_REPACK).parent.mkdir(parents=True)
    (workdir / "cache" / IMDB_REPACK).symlink_to(mirror / IMDB_REPACK)
    result = cluster_run(
        workdir,
        site(workdir, HF_ENDPOINT=internet.hub.url, ROBUSTLM_DOWNLOAD_PREFIX=internet.publishers.url),
        grid_slice(everything=False),
    )
    assert result.returncode == 0, result.stderr[-6000:] + slurm_cluster.log("slurmctld")[-2000:]
    return workdir


def assert_the_slice_is_complete(workdir: Path, everything: bool) -> None:
    for target in grid_slice(everything):
        assert (workdir / target).is_file(), target
    for summary in workdir.glob("results/runs/mr/baseline/seed1/attacks/*/attack_summary.json"):
        substituted = {entry["component"] for entry in yaml.safe_load(summary.read_text())["substitutions"]}
        # only the TensorFlow components: every stock resource was at hand (SBERT's model, the counter-fitted
        # embedding, HowNet, bert-base-uncased)
        assert substituted <= {"UniversalSentenceEncoder", "Google1BillionWordsLanguageModel"}, (summary, substituted)
    if everything:
        assert len(pd.read_csv(workdir / "results/tables/table5_lca_association.csv")) > 0
        assert len(pd.read_csv(workdir / "results/regression/table1.csv")) > 0


def test_the_paper_job_runs_air_gapped_from_a_mirror_the_builder_filled(air_gapped_run):
    assert_the_slice_is_complete(air_gapped_run, everything=True)
    if WHOLE_GRID:
        config = yaml.safe_load(REHEARSAL.read_text())
        attacked = list(air_gapped_run.glob("results/runs/*/*/seed*/attacks/*/attack_summary.json"))
        grid = (
            len(config["datasets"]) * len(config["defenses"]) * len(config["attacks"]["recipes"]) * len(config["seeds"])
        )
        assert len(attacked) == grid
        assert (air_gapped_run / "results/summary.rst").is_file()


def test_the_paper_job_runs_online_downloading_every_resource(online_run, internet):
    assert_the_slice_is_complete(online_run, everything=False)
    test_set = pd.read_parquet(online_run / "results/data/mr.parquet").query("split == 'test'")
    assert len(test_set) > 0 and test_set.id.str.startswith("mr/textfooler/").all()  # TextFooler's MR sample
    assert {download.rsplit("/", 1)[0] for download in internet.hub.downloads} >= {
        *STOCK_BERTS,
        *STOCK_MARIANS,
        FLAIR_UPOS_TAGGER,
    }
    published = " ".join(internet.publishers.requests)
    assert all(
        name in published
        for name in (
            "paragramcf",
            "word_candidates_sense.pkl",
            "wordnet.zip",
            "counterfitted_neighbors.json",
            "treebank.zip",
        )
    )


def test_both_kinds_of_site_read_the_same_data_and_compute_the_same_predictions(air_gapped_run, online_run):
    outputs = [
        path.relative_to(online_run)
        for pattern in ("results/data/*.parquet", "results/runs/**/predictions.parquet")
        for path in sorted(online_run.glob(pattern))
    ]
    assert len(outputs) == 4 + len(RESOURCE_READING_DEFENSES) + 1  # imdb, mr, yelp, treebank; MR's models, IMDB's
    for output in outputs:
        pd.testing.assert_frame_equal(
            pd.read_parquet(online_run / output), pd.read_parquet(air_gapped_run / output), check_exact=True
        )
