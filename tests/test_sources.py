"""Published files without a mirror (downloaded, verified, cached), the mirror builder, and the check that stops a
run that cannot get its data before any job. The publishers' servers are stood in for by a loopback HTTP server
holding the shared mirror's copies at their published paths."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from conftest import REPO, SCHEMA, tiny_config
from hub_standin import HubStandIn
from robustlm import datasets
from robustlm.attacks import FLAIR_UPOS_TAGGER
from robustlm.config import ConfigError, load_config, validate_config
from robustlm.mirror_builder import CHECKSUMS
from robustlm.requirements import missing, needs
from robustlm.sources import (
    ACL_IMDB,
    ATTACK_NLTK_PACKAGES,
    CACHE_VARIABLE,
    COUNTERFITTED_EMBEDDING,
    COUNTERFITTED_NEIGHBORS,
    DOWNLOAD_PREFIX_VARIABLE,
    HOWNET_CANDIDATES,
    NLTK_INDEX,
    NLTK_PACKAGES,
    SENTENCE_POLARITY,
    TEXTFOOLER_SAMPLES,
    TREEBANK,
    DataSourceError,
    sha256_of,
)
from textattack_standin import counterfitted_embedding, flair_upos_tagger, hownet_candidates, zipped

SERVED = (SENTENCE_POLARITY, TEXTFOOLER_SAMPLES["mr"], TEXTFOOLER_SAMPLES["yelp"], TREEBANK, COUNTERFITTED_NEIGHBORS)


class Publishers:
    """https://<host>/<path> of each served file as http://127.0.0.1:<port>/<host>/<path>; `requests` lists what
    was asked for."""

    def __init__(self, root: Path):
        self.root, self.requests = root, []
        publishers = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                publishers.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish_nltk_index(self, mirror: Path, packages) -> None:
        """nltk's index.xml listing `packages` with the mirror's copies (published where the index says) and their
        MD5s."""
        entries = []
        for package in packages:
            url = f"{NLTK_PACKAGES}/{package.subdirectory}/{package.identifier}.zip"
            copy = mirror / package.relative_path
            self.publish(SimpleNamespace(url=url), copy)
            entries.append(
                f'<package id="{package.identifier}" subdir="{package.subdirectory}" url="{url}" '
                f'checksum="{hashlib.md5(copy.read_bytes()).hexdigest()}" />'
            )
        index = f'<?xml version="1.0"?><nltk_data><packages>{"".join(entries)}</packages></nltk_data>'
        self.publish(SimpleNamespace(url=NLTK_INDEX), index.encode())

    def publish(self, file, content: Path | bytes) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(file.url)
        path = self.root / parts.netloc / parts.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.symlink_to(content)


@pytest.fixture
def publishers(tmp_path, mirror, monkeypatch):
    served = Publishers(tmp_path / "published")
    for file in SERVED:
        served.publish(file, mirror / file.relative_path)
    monkeypatch.setenv(DOWNLOAD_PREFIX_VARIABLE, served.url)
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    yield served
    served.server.shutdown()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_without_a_mirror_each_file_is_downloaded_once_from_where_it_is_published(publishers, mirror, tmp_path):
    downloaded, manifest = datasets.prepare(datasets.get("mr"), None, seed=0)
    from_mirror, _ = datasets.prepare(datasets.get("mr"), mirror, seed=0)
    pd.testing.assert_frame_equal(downloaded, from_mirror)
    assert manifest["source"]["kind"] == "download"
    assert manifest["source"]["files"]["datasets/textfooler/mr"]["url"].startswith(
        "https://raw.githubusercontent.com/jind11/TextFooler/"
    )
    assert sorted(publishers.requests) == [
        "/raw.githubusercontent.com/jind11/TextFooler/6a56cb10f1055e00a8fbc6882f289e91cfe60f4e/data/mr",
        "/raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/sentence_polarity.zip",
    ]
    assert (tmp_path / "cache" / "datasets/textfooler/mr").is_file()
    datasets.prepare(datasets.get("mr"), None, seed=0)
    assert len(publishers.requests) == 2  # the second run reads the cache


def test_a_download_cache_holding_an_equivalent_repack_is_read_as_a_mirror_holding_it(publishers, mirror, tmp_path):
    """A site that has its own copy of a repack (IMDB's, without the unlabelled reviews) seeds the cache with it."""
    repack = tmp_path / "cache" / ACL_IMDB.equivalents[0][0]
    repack.parent.mkdir(parents=True)
    repack.symlink_to(mirror / ACL_IMDB.equivalents[0][0])
    assert ACL_IMDB.locate(None) == repack and publishers.requests == []


def test_a_download_that_does_not_match_its_published_checksum_is_refused_and_not_kept(publishers, mirror, tmp_path):
    publishers.publish(TEXTFOOLER_SAMPLES["yelp"], (mirror / "datasets/textfooler/yelp").read_bytes()[:-100])
    with pytest.raises(DataSourceError, match="expected befbfa6f.*nothing was kept"):
        datasets.prepare(datasets.get("yelp"), None, seed=0)
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))


def test_without_network_the_error_names_the_file_and_how_to_build_a_mirror(monkeypatch, tmp_path):
    monkeypatch.setenv(DOWNLOAD_PREFIX_VARIABLE, closed_port_url())
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))
    with pytest.raises(
        DataSourceError,
        match=r"cannot download .*/jind11/TextFooler/.*/data/yelp .*"
        r"robustlm-mirror build DIR --configfile",
    ):
        datasets.prepare(datasets.get("yelp"), None, seed=0)


def test_the_paper_grid_needs_the_stock_models_and_every_published_file():
    config = load_config(REPO / "config" / "paper.yaml", SCHEMA)
    wanted = needs(config, mirror=True)
    assert {file.relative_path for file in wanted.files} == {
        "datasets/imdb/aclImdb_v1.tar.gz",
        "nltk_data/corpora/sentence_polarity.zip",
        "datasets/textfooler/mr",
        "datasets/textfooler/yelp",
        "nltk_data/corpora/treebank.zip",
        "resources/counterfitted_neighbors.json",
    }
    assert set(wanted.models) == {
        "bert-base-uncased",
        "Helsinki-NLP/opus-mt-en-de",
        "Helsinki-NLP/opus-mt-de-en",
        "sentence-transformers/distiluse-base-multilingual-cased-v1",
    }
    assert {resource.name for resource in wanted.textattack} == {
        "word_embeddings/paragramcf",
        "transformations/hownet/word_candidates_sense.pkl",
    }
    # A2T's SBERT model and flair's tagger of PSO's HowNet swaps: fetched into a mirror by the builder, their
    # components replaced (recorded) where a mirror lacks them, and required online, where they download
    assert wanted.stock_models == ("flair/upos-english-fast", "sentence-transformers/stsb-distilbert-base")
    online = needs(config, mirror=False)
    assert set(online.models) == set(wanted.models) | set(wanted.stock_models)


def test_a_config_that_leaves_the_tensorflow_sentence_encoder_is_refused_by_name():
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["attacks"]["sentence_encoder"] = None
    with pytest.raises(ConfigError, match="sentence_encoder"):
        validate_config(config, SCHEMA)


def run_python(code: str, **environment: str) -> str:
    """`code` in a fresh interpreter (huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when imported)."""
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **environment})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def publish_attack_resources(publishers: Publishers, mirror: Path, tmp_path: Path) -> Path:
    """Stand-ins for TextAttack's counter-fitted embedding (returned) and HowNet, and nltk's index and packages."""
    embedding = counterfitted_embedding(
        tmp_path / "standin" / "paragramcf", json.loads((mirror / COUNTERFITTED_NEIGHBORS.relative_path).read_text())
    )
    publishers.publish(COUNTERFITTED_EMBEDDING, zipped(embedding))
    publishers.publish(HOWNET_CANDIDATES, hownet_candidates())
    publishers.publish_nltk_index(mirror, ATTACK_NLTK_PACKAGES)
    return embedding


def build_command(mirror: Path, configfile: Path) -> str:
    return (
        "from robustlm.mirror_builder import main; "
        f"raise SystemExit(main(['build', {str(mirror)!r}, '--configfile', {str(configfile)!r}]))"
    )


def test_the_mirror_builder_fetches_what_a_config_reads_and_a_run_then_finds_it(
    publishers, mirror, tiny_model, tmp_path
):
    config = tiny_config(mirror)
    config.update(model="stand-in/tiny-bert")  # on the hub stand-in
    config["defenses"]["ssmba"]["masked_lm"] = config["attacks"]["masked_lm"] = str(tiny_model)  # a local directory
    config["defenses"]["adv_base"] = {"beta": 10.0, "steps": 1, "step_size": 1.0}
    config["attacks"]["recipes"] = ["textfooler", "pso"]  # TextAttack's counter-fitted embedding and HowNet
    embedding = publish_attack_resources(publishers, mirror, tmp_path)
    tagger = flair_upos_tagger(tmp_path / "flair")  # PSO's HowNet swaps tag words with it
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    built = tmp_path / "built-mirror"
    build = build_command(built, configfile)

    with HubStandIn({"stand-in/tiny-bert": tiny_model, FLAIR_UPOS_TAGGER: tagger}) as hub:
        output = run_python(build, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))
        assert len(publishers.requests) == len(SERVED) + 2 + 1 + len(ATTACK_NLTK_PACKAGES)
        assert sorted(hub.downloads) == sorted(
            [f"stand-in/tiny-bert/{file.name}" for file in tiny_model.iterdir()]
            + [f"{FLAIR_UPOS_TAGGER}/pytorch_model.bin"]
        )
    assert "model stand-in/tiny-bert: fetched" in output and f"model {tiny_model}: a local directory" in output
    listed = dict(line.split("  ")[::-1] for line in (built / CHECKSUMS).read_text().splitlines())
    assert set(listed) == {file.relative_path for file in SERVED} | {
        f"models/stand-in/tiny-bert/{file.name}" for file in tiny_model.iterdir()
    } | {f"models/{FLAIR_UPOS_TAGGER}/pytorch_model.bin"} | {
        f"textattack/word_embeddings/paragramcf/{file.name}" for file in embedding.iterdir()
    } | {HOWNET_CANDIDATES.relative_path} | {package.relative_path for package in ATTACK_NLTK_PACKAGES}
    assert all(
        sha256_of(built / "textattack/word_embeddings/paragramcf" / file.name) == sha256_of(file)
        for file in embedding.iterdir()
    )
    assert all(sha256_of(built / path) == digest for path, digest in listed.items())
    assert all(
        sha256_of(built / "models/stand-in/tiny-bert" / file.name) == sha256_of(file) for file in tiny_model.iterdir()
    )
    assert missing(load_config(configfile, SCHEMA), built) == []
    pd.testing.assert_frame_equal(
        datasets.prepare(datasets.get("mr"), built, seed=0)[0], datasets.prepare(datasets.get("mr"), mirror, seed=0)[0]
    )

    with HubStandIn({}) as hub:  # complete: a rerun fetches nothing
        assert "fetched" not in run_python(build, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))
    assert len(publishers.requests) == len(SERVED) + 2 + 1 + len(ATTACK_NLTK_PACKAGES)


def test_without_a_mirror_an_attack_fetches_its_nltk_packages_and_textattack_resources_through_the_prefix(
    publishers, mirror, tmp_path
):
    """TextAttack's own first-import downloads (nltk) and bucket downloads would go past the download prefix and the
    checks; online they come through sources.py into the cache, and TextAttack's loaders read them from there. No
    connection leaves the loopback."""
    embedding = publish_attack_resources(publishers, mirror, tmp_path)
    script = f"""
import socket
connect = socket.socket.connect
def loopback_only(self, address, *args):
    assert address[0] == "127.0.0.1", f"network access: {{address}}"
    return connect(self, address, *args)
socket.socket.connect = loopback_only
from robustlm.attacks import prepare_textattack
prepare_textattack(None, "textfooler")
import nltk, textattack
from nltk.corpus import stopwords, wordnet
from textattack.shared import WordEmbedding
assert wordnet.synsets("good") and "the" in stopwords.words("english")
assert nltk.pos_tag(["a", "good", "film"], tagset="universal")[1][1] == "ADJ"
assert (WordEmbedding.counterfitted_GLOVE_embedding().nn_matrix == __import__("numpy").load({str(embedding / "nn.npy")!r})).all()
"""
    environment = {"TA_CACHE_DIR": str(tmp_path / "textattack"), "HOME": str(tmp_path / "home")}
    run_python(script, **environment)
    fetched = {request.rsplit("/", 1)[-1] for request in publishers.requests}
    assert fetched == {"index.xml", "paragramcf"} | {f"{package.identifier}.zip" for package in ATTACK_NLTK_PACKAGES}
    assert (tmp_path / "cache" / COUNTERFITTED_EMBEDDING.relative_path / "nn.npy").is_file()
    run_python(script, **environment)  # from the cache
    assert len(publishers.requests) == len(fetched)


def test_a_mirror_built_for_the_paper_grid_holds_all_it_reads(publishers, mirror, tiny_model, tmp_path):
    """The rehearsal of paper.yaml (same resources), built from the stand-ins: bert-base-uncased, the MarianMT
    models, USE's student, A2T's SBERT model and flair's tagger from the hub stand-in, every published file,
    TextAttack's and nltk's resources. A site's own copy of the IMDB repack is kept."""
    publish_attack_resources(publishers, mirror, tmp_path)
    built = tmp_path / "built-mirror"
    (built / "datasets/imdb").mkdir(parents=True)
    (built / "datasets/imdb/aclImdb_labelled.tar.gz").symlink_to(mirror / "datasets/imdb/aclImdb_labelled.tar.gz")
    rehearsal = REPO / ".test/paper/config.yaml"
    stock_models = (
        "bert-base-uncased",
        "Helsinki-NLP/opus-mt-en-de",
        "Helsinki-NLP/opus-mt-de-en",
        "sentence-transformers/distiluse-base-multilingual-cased-v1",
        "sentence-transformers/stsb-distilbert-base",
        "flair/upos-english-fast",
    )

    with HubStandIn({name: tiny_model for name in stock_models}) as hub:
        output = run_python(build_command(built, rehearsal), HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))
    assert "datasets/imdb/aclImdb_v1.tar.gz: present as an equivalent repack" in output
    assert all(f"model {name}: fetched" in output for name in stock_models)
    assert missing(load_config(rehearsal, SCHEMA), built) == []


def test_without_a_mirror_a_model_comes_from_the_hub_and_once_cached_passes_the_check_offline(tiny_model, tmp_path):
    hub_home = str(tmp_path / "hf")
    config = {"datasets": {}, "model": "stand-in/tiny-bert", "defenses": {"baseline": {}}}
    check = f"from robustlm.requirements import missing; print(missing({config!r}, None))"
    assert "stand-in/tiny-bert: not in the Hugging Face cache" in run_python(
        check, HF_HOME=hub_home, HF_HUB_OFFLINE="1"
    )
    with HubStandIn({"stand-in/tiny-bert": tiny_model}) as hub:
        loaded = run_python(
            "from robustlm.models import load_classifier, resolve_model; "
            "print(load_classifier(resolve_model('stand-in/tiny-bert', None)).num_parameters())",
            HF_ENDPOINT=hub.url,
            HF_HOME=hub_home,
        )
        assert "model.safetensors" in " ".join(hub.downloads)
    assert int(loaded) > 0
    assert run_python(check, HF_HOME=hub_home, HF_HUB_OFFLINE="1").strip() == "[]"


def test_without_mirror_or_network_the_default_run_stops_before_any_job_with_one_message(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "ROBUSTLM_MIRROR"}
    environment.update(
        {DOWNLOAD_PREFIX_VARIABLE: closed_port_url(), CACHE_VARIABLE: str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    )
    workdir = tmp_path / "clone"  # no ../shared/mirror beside it, so `mirror: auto` finds none
    workdir.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(REPO / "config" / "config.yaml"),
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert result.returncode != 0
    message = result.stderr
    assert "cannot run with no mirror" in message
    for missing_file in ("datasets/textfooler/mr", "datasets/textfooler/yelp", "nltk_data/corpora/treebank.zip"):
        assert f"  - {missing_file}: " in message
    assert "  - model models/minilm-l6-h384-uncased-mlm: a mirror's model, and no mirror" in message
    assert "robustlm-mirror build DIR --configfile" in message
    assert not (workdir / "results").exists()


def test_a_hub_dataset_downloads_without_a_mirror_and_the_builder_puts_it_in_one_a_run_reads_offline(
    tiny_model, tmp_path
):
    """A dataset of one's own on the hub (3 classes, train as parquet, test as CSV): downloaded through the hub's
    client without a mirror, fetched into a mirror by the builder, read from there with the hub switched off; the
    check names what a mirror lacks."""
    repository = tmp_path / "hub" / "triage"
    repository.mkdir(parents=True)
    labels = ["low", "medium", "high"]
    reports = pd.DataFrame(
        {"report": [f"report {n}" for n in range(30)], "urgency": [labels[n % 3] for n in range(30)]}
    )
    reports.to_parquet(repository / "train.parquet")
    (repository / "test.csv").write_text("report,urgency\n" + "".join(f"case {n},{n % 3}\n" for n in range(9)))
    source = {
        "hub": "acme/triage",
        "files": {"train": "train.parquet", "test": "test.csv"},
        "text": "report",
        "label": "urgency",
        "labels": labels,
    }
    config = {
        "model": str(tiny_model),
        "datasets": {"triage": {"source": source}},
        "ood_datasets": {},
        "defenses": {"baseline": {}},
        "seeds": [1],
        "training": {"max_length": 32, "batch_size": 16, "epochs": 1, "learning_rate": 1e-4},
        "evaluation": {"batch_size": 32},
    }
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    built = tmp_path / "built-mirror"

    def prepared(mirror: Path | None, **environment: str) -> dict:
        code = (
            "import json; from pathlib import Path; from robustlm import datasets; "
            "from robustlm.config import load_config; "
            f"config = load_config({str(configfile)!r}, {str(SCHEMA)!r}); "
            "frame, manifest = datasets.prepare(datasets.configured(config, 'triage'), "
            f"{None if mirror is None else f'Path({str(mirror)!r})'}, seed=0); "
            "print(json.dumps({'counts': frame.groupby(['split', 'label']).size().to_dict().__repr__(), "
            "'source': manifest['source']}))"
        )
        return json.loads(run_python(code, **environment))

    with HubStandIn({"datasets/acme/triage": repository}) as hub:
        online = prepared(None, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))
        run_python(build_command(built, configfile), HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-builder"))
        assert sorted(hub.downloads) == sorted(
            ["datasets/acme/triage/test.csv", "datasets/acme/triage/train.parquet"] * 2
        )
    # 27 train examples (a tenth carved out for validation), 9 test, 3 of each class
    assert "('test', 2): 3" in online["counts"] and "('validation', 0)" in online["counts"]
    assert online["source"]["kind"] == "hub dataset" and online["source"]["files"]["test"]["read_from"] == "hub"
    assert online["source"]["files"]["train"]["sha256"] == sha256_of(repository / "train.parquet")
    listed = (built / CHECKSUMS).read_text()
    assert f"{sha256_of(repository / 'test.csv')}  datasets/hub/acme/triage/main/test.csv" in listed
    assert missing(load_config(configfile, SCHEMA), built) == []

    offline = prepared(built, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-empty"))
    assert offline["counts"] == online["counts"] and offline["source"]["files"]["test"]["read_from"] == "mirror"
    assert [file["sha256"] for file in offline["source"]["files"].values()] == [
        file["sha256"] for file in online["source"]["files"].values()
    ]
    (built / "datasets/hub/acme/triage/main/test.csv").unlink()
    assert missing(load_config(configfile, SCHEMA), built) == [
        "datasets/hub/acme/triage/main/test.csv: the test file of dataset 'triage' (hub dataset acme/triage), not "
        "in the mirror"
    ]
    check = f"from robustlm.requirements import missing; print(missing({load_config(configfile, SCHEMA)!r}, None))"
    assert (
        "the test file of dataset 'triage': test.csv of hub dataset acme/triage, not in the Hugging Face cache, and the hub is switched off"
        in (run_python(check, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-empty")))
    )
