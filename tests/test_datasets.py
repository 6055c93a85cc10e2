import io
import re
import tarfile
import zipfile

import pandas as pd
import pytest

from conftest import SCHEMA, copy_mirror_subset
from robustlm import datasets
from robustlm.config import validate_config
from robustlm.datasets.ag_news import AG_NEWS_TRAIN
from robustlm.datasets.base import normalized
from robustlm.requirements import missing
from robustlm.sources import DataSourceError, PublishedFile, sha256_of


@pytest.fixture(scope="module")
def prepared(mirror):
    return {name: datasets.prepare(datasets.get(name), mirror, seed=0) for name in ("imdb", "mr", "yelp")}


def counts(frame):
    return frame.split.value_counts().to_dict()


def test_imdb_official_splits_with_seeded_validation(prepared):
    frame, manifest = prepared["imdb"]
    assert counts(frame) == {"test": 25000, "train": 22500, "validation": 2500}
    assert frame.groupby("split").label.mean().between(0.49, 0.51).all()
    assert not frame.text.str.contains("<br").any()
    assert manifest["source"]["kind"] == "mirror"
    assert frame.id.is_unique


def test_mr_holds_out_the_textfooler_sample(prepared, mirror):
    frame, _ = prepared["mr"]
    test = frame[frame.split == "test"]
    assert len(test) == 1000
    training = frame[frame.split != "test"]
    assert not set(training.text.map(normalized)) & set(test.text.map(normalized))
    assert 9000 < len(training) <= 10662 - 1000
    assert abs(len(frame[frame.split == "validation"]) - 0.1 * len(training)) <= 1
    assert training.label.mean() == pytest.approx(0.5, abs=0.01)


def test_yelp_is_the_textfooler_ood_sample(prepared):
    frame, _ = prepared["yelp"]
    assert counts(frame) == {"test": 1000}
    assert set(frame.label) == {0, 1}
    assert not frame.text.str.contains(r"\\n", regex=False).any()


def test_validation_carve_depends_only_on_seed(mirror):
    first, _ = datasets.prepare(datasets.get("mr"), mirror, seed=0)
    again, _ = datasets.prepare(datasets.get("mr"), mirror, seed=0)
    other, _ = datasets.prepare(datasets.get("mr"), mirror, seed=1)
    ids = lambda f: set(f.id[f.split == "validation"])
    assert ids(first) == ids(again) != ids(other)


def test_select_is_seeded_and_order_independent(prepared):
    frame, _ = prepared["mr"]
    train = frame[frame.split == "train"]
    picked = datasets.select(train, 50, seed=3)
    shuffled = datasets.select(train.sample(frac=1, random_state=9), 50, seed=3)
    assert picked.id.tolist() == shuffled.id.tolist()
    assert len(picked) == 50
    assert len(datasets.select(train, None, seed=3)) == len(train)


def test_missing_source_file_names_it_with_checksum(tmp_path):
    with pytest.raises(DataSourceError) as error:
        datasets.prepare(datasets.get("yelp"), tmp_path, seed=0)
    message = str(error.value)
    assert str(tmp_path / "datasets/textfooler/yelp") in message
    assert "befbfa6f" in message and "/jind11/TextFooler/" in message and "robustlm-mirror build" in message


def test_corrupt_source_file_is_rejected(tmp_path, mirror):
    copy_mirror_subset(mirror, tmp_path, ["datasets/textfooler/yelp"])
    target = tmp_path / "datasets/textfooler/yelp"
    target.write_text(target.read_text()[:-500])
    with pytest.raises(DataSourceError, match="corrupt data file .*expected befbfa6f"):
        datasets.prepare(datasets.get("yelp"), tmp_path, seed=0)


def imdb_archive(reviews: dict[str, bytes]) -> bytes:
    """aclImdb's layout: one review per member, `aclImdb/<split>/<pos|neg>/<id>_<rating>.txt`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in reviews.items():
            member = tarfile.TarInfo(f"aclImdb/{name}")
            member.size = len(text)
            archive.addfile(member, io.BytesIO(text))
    return buffer.getvalue()


def polarity_corpus(pos: bytes, neg: bytes) -> bytes:
    """NLTK's sentence_polarity.zip: one sentence per line and polarity."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("sentence_polarity/rt-polarity.pos", pos)
        archive.writestr("sentence_polarity/rt-polarity.neg", neg)
    return buffer.getvalue()


def synthetic_mirror(root, monkeypatch, name: str, *contents: bytes):
    """`contents` written under `root` at the paths of dataset `name`'s source files, which are pinned to
    them (the real ones' checksums would reject them); returns the files."""
    dataset = datasets.DATASETS[name]
    paths = [root / source.relative_path for source in dataset.sources]
    for path, content in zip(paths, contents, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    monkeypatch.setattr(
        dataset,
        "sources",
        tuple(
            PublishedFile(source.relative_path, sha256_of(path), source.url, "a test")
            for source, path in zip(dataset.sources, paths)
        ),
    )
    return paths


EMPTY_TEXTS = {  # per dataset: sources with texts empty after cleaning, and the examples and skips expected per split
    "imdb": (
        (
            imdb_archive(
                {
                    "train/pos/0_9.txt": b"A fine film.",
                    "train/neg/1_2.txt": b" <br /><br /> ",
                    "test/pos/2_8.txt": b"Loved it.",
                    "test/neg/3_1.txt": b"",
                }
            ),
        ),
        {"train": (1, 1), "validation": (0, 0), "test": (1, 1)},
    ),
    "mr": (
        (polarity_corpus(b"warm and funny\n   \n", b"dull and long\n\n"), b"1 a moving film\n0 \n"),
        {"train": (2, 2), "validation": (0, 0), "test": (1, 1)},
    ),
    "yelp": ((b'1 "great food , friendly staff"\n0 ""\n1 \\n \\n\n0 cold and bland\n',), {"test": (2, 2)}),
}


@pytest.mark.parametrize("name", EMPTY_TEXTS)
def test_empty_texts_are_skipped_and_counted_per_split(name, tmp_path, monkeypatch):
    sources, expected = EMPTY_TEXTS[name]
    synthetic_mirror(tmp_path, monkeypatch, name, *sources)
    frame, manifest = datasets.prepare(datasets.get(name), tmp_path, seed=0)
    assert (frame.text.str.strip() != "").all()
    found = {
        split: (split_counts["examples"], split_counts["skipped_empty_texts"])
        for split, split_counts in manifest["splits"].items()
    }
    assert found == expected
    assert counts(frame) == {split: examples for split, (examples, _) in expected.items() if examples}


NOT_UTF8 = {  # per dataset: sources whose first file has a Latin-1 byte, and where after its path the error puts it
    "imdb": (
        (imdb_archive({"train/pos/0_9.txt": b"A fine film.", "train/neg/1_2.txt": b"Caf\xe9 society, dull."}),),
        ":aclImdb/train/neg/1_2.txt is not UTF-8 at line 1",
    ),
    "mr": (
        (polarity_corpus(b"warm and funny\n", b"dull\ncaf\xe9 society\n"), b"1 a moving film\n"),
        ":sentence_polarity/rt-polarity.neg is not UTF-8 at line 2",
    ),
    "yelp": ((b"1 great food\n0 cold caf\xe9\n",), " is not UTF-8 at line 2"),
}


@pytest.mark.parametrize("name", NOT_UTF8)
def test_a_source_that_is_not_utf8_is_an_error_naming_the_file_and_line(name, tmp_path, monkeypatch):
    sources, where = NOT_UTF8[name]
    paths = synthetic_mirror(tmp_path, monkeypatch, name, *sources)
    with pytest.raises(DataSourceError, match=re.escape(f"{paths[0]}{where}")):
        datasets.prepare(datasets.get(name), tmp_path, seed=0)


def test_a_sample_line_without_a_label_is_an_error_naming_the_line(tmp_path, monkeypatch):
    (path,) = synthetic_mirror(tmp_path, monkeypatch, "yelp", b"1 great food\n\n0 cold and bland\n")
    with pytest.raises(DataSourceError, match=re.escape(f"{path}:2 does not start with a 0-1 label")):
        datasets.prepare(datasets.get("yelp"), tmp_path, seed=0)


def test_truncated_parquet_is_reported(tmp_path, prepared):
    frame, _ = prepared["yelp"]
    path = tmp_path / "yelp.parquet"
    frame.to_parquet(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataSourceError, match="rerun its prepare_data job"):
        datasets.read_split(path, "test")


def own_source(tmp_path, **overrides):
    """A 3-class dataset of the user's own: train as CSV with class names, test as JSON lines with indices."""
    (tmp_path / "train.csv").write_text(
        "sentence,rating\n" + "".join(f"text {n},{['bad', 'so-so', 'good'][n % 3]}\n" for n in range(30))
    )
    (tmp_path / "test.jsonl").write_text("".join(f'{{"sentence": "test {n}", "rating": {n % 3}}}\n' for n in range(9)))
    return {
        "files": {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.jsonl")},
        "text": "sentence",
        "label": "rating",
        "labels": ["bad", "so-so", "good"],
        **overrides,
    }


def test_a_dataset_defined_in_the_config_reads_its_files_and_names_its_classes(tmp_path):
    frame, manifest = datasets.prepare(datasets.get("reviews", own_source(tmp_path)), None, seed=0)
    assert counts(frame) == {"train": 27, "test": 9, "validation": 3}  # validation: a tenth of train
    train = frame[frame.split != "test"].set_index("text")
    assert (train.loc["text 4", "label"], train.loc["text 5", "label"]) == (1, 2)  # so-so, good
    assert frame[frame.split == "test"].label.tolist() == [0, 1, 2] * 3
    assert manifest["labels"] == ["bad", "so-so", "good"]
    assert manifest["splits"]["test"]["per_label"] == {"bad": 3, "so-so": 3, "good": 3}
    assert manifest["source"]["files"]["train"]["sha256"] == sha256_of(tmp_path / "train.csv")


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda source: source.update(labels=["bad", "good"]), r"label 'so-so' \(row 1\) is none of the classes"),
        (lambda source: source.update(text="review"), r"has no column \['review'\]"),
        (lambda source: source["files"].update(test="test.xlsx"), r"reads .csv, .tsv, .jsonl, .parquet files"),
    ],
)
def test_a_malformed_dataset_of_ones_own_is_named(tmp_path, edit, expected):
    source = own_source(tmp_path)
    edit(source)
    with pytest.raises(DataSourceError, match=expected):
        datasets.prepare(datasets.get("reviews", source), None, seed=0)


def test_a_dataset_of_sentence_pairs_keeps_both_texts(tmp_path):
    (tmp_path / "nli.jsonl").write_text(
        "".join(
            f'{{"premise": "a man sleeps {n}", "hypothesis": "{h}", "label": "{label}"}}\n'
            for n, (h, label) in enumerate([("a man rests", "entailment"), ("a man runs", "contradiction")] * 5)
        )
    )
    source = {
        "files": {"train": str(tmp_path / "nli.jsonl"), "test": str(tmp_path / "nli.jsonl")},
        "text": ["premise", "hypothesis"],
        "label": "label",
        "labels": ["entailment", "neutral", "contradiction"],
    }
    frame, manifest = datasets.prepare(datasets.get("nli", source), None, seed=0)
    assert datasets.has_pairs(frame) and manifest["pairs"]
    test = frame[frame.split == "test"]
    assert (test.text.iloc[1], test.text_pair.iloc[1], test.label.iloc[1]) == ("a man sleeps 1", "a man runs", 2)
    assert not datasets.has_pairs(datasets.prepare(datasets.get("reviews", own_source(tmp_path)), None, seed=0)[0])


@pytest.mark.parametrize("name", ["snli", "mnli"])
def test_nli_datasets_are_pairs_tested_on_textfoolers_samples(name, mirror):
    frame, manifest = datasets.prepare(datasets.get(name), mirror, seed=0)
    assert counts(frame) == {"train": 8999, "validation": 1000, "test": 1000}
    assert manifest["labels"] == ["entailment", "neutral", "contradiction"] and manifest["pairs"]
    assert frame.text.str.len().gt(0).all() and frame.text_pair.str.len().gt(0).all()
    assert frame.groupby("split").label.nunique().eq(3).all()
    pairs = frame.text.map(normalized) + "|" + frame.text_pair.map(normalized)
    assert not set(pairs[frame.split != "test"]) & set(pairs[frame.split == "test"])
    assert manifest["source"]["files"][f"datasets/textfooler/{'snli' if name == 'snli' else 'mnli_matched'}"]["url"]


def test_sst2_trains_on_glue_train_and_tests_on_glue_dev(mirror):
    frame, manifest = datasets.prepare(datasets.get("sst2"), mirror, seed=0)
    assert counts(frame) == {"train": 60614, "validation": 6735, "test": 872}
    assert manifest["labels"] == ["negative", "positive"] and not manifest["pairs"]
    dev = frame[frame.split == "test"]
    assert dev.text.iloc[0] == "one long string of cliches ." and dev.label.iloc[0] == 0


def test_a_file_only_a_mirror_holds_is_an_error_naming_it_without_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLM_CACHE", str(tmp_path))
    with pytest.raises(
        DataSourceError, match=r"SNLI's training set \(datasets/snli_sample/train.json\) has no published"
    ):
        datasets.prepare(datasets.get("snli"), None, seed=0)


def test_ag_news_trains_on_the_hub_release_and_tests_on_textfoolers_sample_held_out(mirror, tmp_path):
    """Four classes; the training set is the hub's (here a small stand-in in a mirror's hub layout), the test set
    TextFooler's sample, whose articles (in another case and tokenization) are dropped from training."""
    sample = "datasets/textfooler/ag"
    built = copy_mirror_subset(mirror, tmp_path / "mirror", [sample])
    test_texts = [line.partition(" ")[2] for line in (mirror / sample).read_text().splitlines()[:3]]
    published = [text.upper().replace(" , ", ", ").replace(" - ", "-") for text in test_texts]
    train = pd.DataFrame(
        {"text": published + [f"article {n} about topic {n % 4}" for n in range(37)], "label": [1, 3, 0, *range(37)]}
    )
    train["label"] %= 4
    (built / AG_NEWS_TRAIN.relative_path).parent.mkdir(parents=True)
    train.to_parquet(built / AG_NEWS_TRAIN.relative_path)

    frame, manifest = datasets.prepare(datasets.get("ag_news"), built, seed=0)
    assert counts(frame) == {"train": 33, "validation": 4, "test": 1000}  # 40 less the 3 test articles
    assert manifest["labels"] == ["World", "Sports", "Business", "Sci/Tech"]
    assert frame[frame.split == "test"].label.nunique() == 4
    assert not set(frame[frame.split != "test"].text.map(normalized)) & set(
        frame[frame.split == "test"].text.map(normalized)
    )
    assert manifest["source"]["hub_files"]["train"]["sha256"] == sha256_of(built / AG_NEWS_TRAIN.relative_path)

    config = {
        "model": "models/minilm-l6-h384-uncased-mlm",
        "datasets": {"ag_news": {}},
        "ood_datasets": {},
        "defenses": {"baseline": {}},
        "seeds": [1],
        "training": {"max_length": 32, "batch_size": 16, "epochs": 1, "learning_rate": 1e-4},
        "evaluation": {"batch_size": 32},
    }
    assert missing(validate_config(config, SCHEMA), mirror) == [
        f"{AG_NEWS_TRAIN.relative_path}: AG News's training set (hub dataset fancyzhx/ag_news), not in the mirror"
    ]
