"""Where every public file the pipeline reads comes from: its published location, its SHA-256 and its path in the
mirror layout. A run reads them from one store: an air-gapped mirror when there is one (never downloading), else
a download cache in the same layout, filled from the published locations on first use."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

CACHE_VARIABLE = "ROBUSTLM_CACHE"
# A URL prefix under which https://<host>/<path> is served as <prefix>/<host>/<path>: a site's artifact proxy (an
# Artifactory or Nexus "generic remote"), or the tests' loopback server standing in for the publishers.
DOWNLOAD_PREFIX_VARIABLE = "ROBUSTLM_DOWNLOAD_PREFIX"
BUILD_COMMAND = "robustlm-mirror build DIR --configfile <config>"
DOWNLOAD_TIMEOUT_SECONDS = 60


class DataSourceError(RuntimeError):
    """A source file is missing, cannot be downloaded, does not match its published checksum, or does not read as
    its format says."""


@dataclass(frozen=True)
class PublishedFile:
    relative_path: str  # in the mirror layout
    sha256: str
    url: str | None  # pinned to a commit or release wherever the publisher allows; None: known only from a mirror
    what: str
    # Repacks of the same content that a mirror may hold instead, as (relative path, sha256)
    equivalents: tuple[tuple[str, str], ...] = ()

    def locate(self, mirror: Path | None) -> Path:
        """The verified file: from the mirror if one is given, else from the download cache (downloaded if absent;
        the cache, in the mirror's layout, may hold an equivalent repack as a mirror does)."""
        if mirror is not None:
            return self._in_mirror(Path(mirror))
        if self.present_in(cache_dir()):
            return self._in_mirror(cache_dir())
        if self.url is None:
            raise DataSourceError(
                f"{self.what} ({self.relative_path}) has no published location to download it from; only a mirror "
                "holds it. Set ROBUSTLM_MIRROR to one that does, or give the dataset's files in the config (README, "
                "Your own dataset)."
            )
        path = cache_dir() / self.relative_path
        download(self.url, path, self.sha256)  # verified as it is written
        return path

    def _in_mirror(self, mirror: Path) -> Path:
        for relative_path, sha256 in ((self.relative_path, self.sha256), *self.equivalents):
            if (mirror / relative_path).is_file():
                return verified(mirror / relative_path, sha256, self.url)
        raise DataSourceError(
            f"missing {self.what}: {mirror / self.relative_path} (sha256 {self.sha256}). "
            + (
                f"Complete the mirror with `{BUILD_COMMAND}` on a machine with internet (it fetches {self.url}), or "
                "unset the mirror to download it."
                if self.url
                else "It has no published location: copy it from a mirror that holds it."
            )
        )

    def present_in(self, root: Path) -> bool:
        return any((root / path).is_file() for path, _ in ((self.relative_path, self.sha256), *self.equivalents))


def provenance(files: tuple[PublishedFile, ...], mirror: Path | None) -> dict:
    """Where a run's files came from, for its manifest."""
    return {
        "kind": "mirror" if mirror is not None else "download",
        "files": {file.relative_path: {"sha256": file.sha256, "url": file.url} for file in files},
    }


def cache_dir() -> Path:
    """Downloads of a run without a mirror: $ROBUSTLM_CACHE, else ~/.cache/robustlm."""
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "robustlm")


def routed(url: str) -> str:
    """`url`, or its copy under $ROBUSTLM_DOWNLOAD_PREFIX."""
    prefix = os.environ.get(DOWNLOAD_PREFIX_VARIABLE)
    if not prefix:
        return url
    parts = urllib.parse.urlsplit(url)
    return f"{prefix.rstrip('/')}/{parts.netloc}{parts.path}"


def download(url: str, destination: Path, expected: str | None, algorithm: str = "sha256") -> None:
    """`url` to `destination`, which appears only once complete and, given the `expected` digest (SHA-256, or the
    `algorithm` a publisher uses), verified; concurrent jobs may race."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    source = routed(url)
    handle, partial = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    digest = hashlib.new(algorithm)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_SECONDS) as reply:
            for block in iter(lambda: reply.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if expected is not None and digest.hexdigest() != expected:
            raise DataSourceError(
                f"{source} downloaded with {algorithm} {digest.hexdigest()}, expected {expected}: the "
                "published file changed or the download was corrupted; nothing was kept"
            )
        os.replace(partial, destination)
    except (urllib.error.URLError, OSError) as exc:
        raise DataSourceError(
            f"cannot download {source} ({getattr(exc, 'reason', exc)}). Without network, build a mirror with "
            f"`{BUILD_COMMAND}` on a machine with internet and set ROBUSTLM_MIRROR=DIR."
        ) from exc
    finally:
        Path(partial).unlink(missing_ok=True)


def verified(path: Path, sha256: str, url: str | None) -> Path:
    digest = sha256_of(path)
    if digest != sha256:
        raise DataSourceError(
            f"corrupt data file {path}: sha256 is {digest}, expected {sha256}. Replace it with a fresh copy of "
            f"{url or 'it from a mirror that holds it'}."
        )
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class NltkPackage:
    """An nltk data package the attacks read. nltk's index publishes its location and MD5 (what nltk's own downloader
    checks); a mirror holds it at nltk_data/<subdirectory>/<identifier>.zip, or unpacked there."""

    identifier: str
    subdirectory: str

    @property
    def relative_path(self) -> str:
        return f"nltk_data/{self.subdirectory}/{self.identifier}.zip"

    def present_in(self, root: Path) -> bool:
        return (root / self.relative_path).is_file() or (root / self.relative_path).with_suffix("").is_dir()


@dataclass(frozen=True)
class TextAttackResource:
    """A stock resource of TextAttack's recipes, which TextAttack downloads from its S3 bucket into its cache as
    `<cache>/<name>` (a zip is unpacked there). A mirror holds it at textattack/<name>, and its attacks then use it
    instead of a stand-in. TextAttack publishes no checksums: the mirror builder records those of what it fetched."""

    name: str
    what: str

    @property
    def url(self) -> str:
        return f"{TEXTATTACK_S3}/{self.name}"

    @property
    def relative_path(self) -> str:
        return f"textattack/{self.name}"

    def fetch_into(self, root: Path) -> bool:
        """Download it to <root>/textattack/<name> unless there, unpacked as TextAttack unpacks it (its zips hold the
        folder itself); whether it was fetched. A concurrent job fetching the same resource may win the race."""
        target = root / self.relative_path
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            fetched = Path(scratch) / "download"
            download(self.url, fetched, expected=None)  # TextAttack publishes no checksum (a mirror's SHA256SUMS does)
            if zipfile.is_zipfile(fetched):
                with zipfile.ZipFile(fetched) as bundle:
                    bundle.extractall(Path(scratch) / "unpacked")
                fetched = Path(scratch) / "unpacked" / target.name
                if not fetched.exists():
                    raise DataSourceError(f"{routed(self.url)} unpacks to no {target.name} folder")
            try:
                fetched.rename(target)
            except OSError:
                if not target.exists():
                    raise
        return True


def fetch_nltk_packages(packages: tuple[NltkPackage, ...], root: Path) -> list[NltkPackage]:
    """The `packages` missing under <root>/nltk_data, located and checked (MD5) through nltk's index, as nltk's
    downloader does; those fetched."""
    wanted = [package for package in packages if not package.present_in(root)]
    if wanted:
        index_file = root / "nltk_data" / f".index-{os.getpid()}.xml"
        download(NLTK_INDEX, index_file, expected=None)
        try:
            index = {element.get("id"): element for element in ElementTree.parse(index_file).iter("package")}
        finally:
            index_file.unlink()
        for package in wanted:
            if package.identifier not in index:
                raise DataSourceError(f"nltk's index ({NLTK_INDEX}) lists no package {package.identifier}")
            entry = index[package.identifier]
            download(entry.get("url"), root / package.relative_path, entry.get("checksum"), algorithm="md5")
    return wanted


TEXTATTACK_S3 = "https://textattack.s3.amazonaws.com"
NLTK_INDEX = "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/index.xml"
NLTK_PACKAGES = "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages"
TEXTFOOLER_DATA = "https://raw.githubusercontent.com/jind11/TextFooler/6a56cb10f1055e00a8fbc6882f289e91cfe60f4e/data"

SENTENCE_POLARITY = PublishedFile(
    "nltk_data/corpora/sentence_polarity.zip",
    "6e1ed4405b65c7eabf1d199a7f7c437091ac21da0ea7467b410a74062574566b",
    f"{NLTK_PACKAGES}/corpora/sentence_polarity.zip",
    "MR, Pang & Lee's sentence polarity v1.0 (nltk package)",
)
TREEBANK = PublishedFile(
    "nltk_data/corpora/treebank.zip",
    "9da92d76c3666cfb6cddeaed0f7e86b344cce0f0928a286d439e555f19c37399",
    f"{NLTK_PACKAGES}/corpora/treebank.zip",
    "the Penn Treebank WSJ sample (nltk package)",
)
TEXTFOOLER_SAMPLES = {
    name: PublishedFile(
        f"datasets/textfooler/{name}",
        sha256,
        f"{TEXTFOOLER_DATA}/{name}",
        f"TextFooler's 1,000-example {name} test sample",
    )
    for name, sha256 in (
        ("mr", "6d36d344c14cece04ec67bcc1cef243b8c067bfd20d212345556aa67eb83eed2"),
        ("yelp", "befbfa6f4737ed813f0830bcab7ce9df1fa141a0648bab04f894c9318c8231fc"),
        ("snli", "83cd1793c0900b9aa87f31b95757b6b874184e4c30d4a78e9b3e5a5c1013c1ed"),
        ("mnli_matched", "248f2bf5ce2c431785aad9946032e350b0dd07a9b67efc161c3a5041b6ce5360"),
        ("mnli_mismatched", "f418302efa473eb78a7794c0838a042358c545dc97a3c15d54339ccaae61fdae"),
        ("ag", "b3e1164c4abf303651f84da8c66905c937e3a7758fe8672ad8a9f1288c334c53"),
    )
}
# Samples of SNLI's and MNLI's training sets and GLUE's SST-2 in the shared mirror's own layout, whose publisher
# is not recorded there: no download location is known, so only a mirror provides them.
MIRROR_ONLY = {
    relative_path: PublishedFile(relative_path, sha256, None, what)
    for relative_path, sha256, what in (
        (
            "datasets/snli_sample/train.json",
            "96884d45d9654f34cf7b14f03d5c0babc5a2de5a01ea884db14f401e63f24b0c",
            "a random sample of SNLI's training set",
        ),
        (
            "datasets/snli_sample/dev.json",
            "adacb7564e2096190e878e66b3d73b3b477b508aec3ae6826b2b1ea90bfbe34f",
            "the 1,000-pair dev file of the mirror's SNLI sample",
        ),
        (
            "datasets/mnli_sample/train.json",
            "dae8f1133d8d48b3d6dc747b244eb75273ab398893eb2c459456bd46748c8e0b",
            "a random sample of MNLI's training set",
        ),
        (
            "datasets/mnli_sample/dev.json",
            "1229f3294d9fb83a61642fb7bf1fb7a98a0954218dca43e69a3840fabf37671a",
            "the 1,000-pair dev file of the mirror's MNLI sample",
        ),
        (
            "datasets/sst2/train.tsv",
            "e981ceb4fe6c9acd1c79851d0d091b9e78103f1f2a399ca83dda27915d41c56c",
            "GLUE's SST-2 training set",
        ),
        (
            "datasets/sst2/dev.tsv",
            "84207e6be5873fb18db798cc6faec86871f5a426554650ff64a1c34e87665f6f",
            "GLUE's SST-2 development set",
        ),
    )
}
ACL_IMDB = PublishedFile(
    "datasets/imdb/aclImdb_v1.tar.gz",
    "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
    "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    "IMDB, Maas et al. 2011's aclImdb release",
    # the shared mirror's copy, repacked without train/unsup and the *.feat files
    equivalents=(
        ("datasets/imdb/aclImdb_labelled.tar.gz", "7742b240cc4309acb147dda61d94cd7ff973a1f4c070cb030778fc3ccf210c77"),
    ),
)
COUNTERFITTED_NEIGHBORS = PublishedFile(
    "resources/counterfitted_neighbors.json",
    "103247143f39bd5dd66850f3a912393392641dbd98093c61e2b24a4cc8a96fb0",
    "https://raw.githubusercontent.com/dongxinshuai/RIFT-NeurIPS2021/633ba92d6951432e03956f942c53cacf575e15c9/"
    "attack/counterfitted_neighbors.json",
    "the counter-fitted neighbour lists of Jia et al. 2019, as RIFT's code ships them",
)

COUNTERFITTED_EMBEDDING = TextAttackResource(
    "word_embeddings/paragramcf", "the counter-fitted embedding (vectors, neighbours, distances) of word swaps"
)
HOWNET_CANDIDATES = TextAttackResource(
    "transformations/hownet/word_candidates_sense.pkl", "PSO's HowNet sememe substitution candidates"
)
# what the attacks read through nltk: stopwords, WordNet (PWWS), the POS tagger and its universal tag set
ATTACK_NLTK_PACKAGES = (
    NltkPackage("stopwords", "corpora"),
    NltkPackage("wordnet", "corpora"),
    NltkPackage("averaged_perceptron_tagger_eng", "taggers"),
    NltkPackage("universal_tagset", "taggers"),
)
