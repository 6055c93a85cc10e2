"""`robustlm-mirror build DIR --configfile CONFIG`: on a machine with internet, fetch every published file, hub
model and stock TextAttack resource a configuration reads into DIR, in the mirror layout, with a SHA256SUMS over it
all. An air-gapped site then
runs that configuration with ROBUSTLM_MIRROR=DIR (or `mirror: DIR`)."""
from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from .config import ConfigError, load_config
from .requirements import needs
from .sources import NLTK_INDEX, DataSourceError, NltkPackage, TextAttackResource, download, sha256_of

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
CHECKSUMS = "SHA256SUMS"
# what a model directory needs (PyTorch weights, configuration, tokenizer), not other frameworks' copies
MODEL_FILES_SKIPPED = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "tf_model*", "flax_model*", "rust_model*",
                       "onnx/*", "coreml/*", "openvino/*"]


def fetch_model(name: str, mirror: Path) -> str:
    """`name` from the Hugging Face hub ($HF_ENDPOINT) into <mirror>/models/<name>; what was done, in words."""
    if Path(name).is_dir():
        return f"model {name}: a local directory, read in place (copy it beside the mirror if the site cannot see it)"
    if name.startswith("models/"):
        if (mirror / name / "config.json").is_file():
            return f"model {name}: present"
        raise DataSourceError(f"model {name}: a mirror's own model, published on no hub; copy it into {mirror / name}")
    target = mirror / "models" / name
    if (target / "config.json").is_file():
        return f"model {name}: present"
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        snapshot_download(repo_id=name, local_dir=target, ignore_patterns=MODEL_FILES_SKIPPED)
    except (RepositoryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        raise DataSourceError(f"model {name}: cannot fetch it from the hub ({type(exc).__name__}: {exc})") from exc
    return f"model {name}: fetched"


def fetch_files(config: dict, mirror: Path) -> list[str]:
    done = []
    for file in needs(config, mirror=True).files:
        path = mirror / file.relative_path
        if file.present_in(mirror):  # verified, as a run reads it
            repack = file.locate(mirror) != path
            done.append(f"{file.relative_path}: present" + (" as an equivalent repack" if repack else ""))
        else:
            download(file.url, path, file.sha256)
            done.append(f"{file.relative_path}: fetched from {file.url}")
    return done


def fetch_textattack(resource: TextAttackResource, mirror: Path) -> str:
    """A stock TextAttack resource into <mirror>/textattack/<name>, unpacked as TextAttack unpacks it."""
    target = mirror / resource.relative_path
    if target.exists():
        return f"{resource.relative_path}: present"
    with tempfile.TemporaryDirectory(dir=mirror) as scratch:
        archive = Path(scratch) / "download"
        download(resource.url, archive, expected=None)  # TextAttack publishes no checksum: SHA256SUMS records this copy
        if zipfile.is_zipfile(archive):
            unpacked = Path(scratch) / "unpacked"
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(unpacked)  # TextAttack's zips hold the folder itself
            archive = unpacked / target.name
            if not archive.exists():
                raise DataSourceError(f"{resource.url} unpacks to no {target.name} folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        archive.rename(target)
    return f"{resource.relative_path}: fetched from {resource.url}"


def fetch_nltk_packages(packages: tuple[NltkPackage, ...], mirror: Path) -> list[str]:
    """nltk packages into <mirror>/nltk_data, located and checked (MD5) through nltk's index, as nltk's downloader
    does."""
    wanted = [package for package in packages if not package.present_in(mirror)]
    done = [f"{package.relative_path}: present" for package in packages if package not in wanted]
    if wanted:
        with tempfile.TemporaryDirectory(dir=mirror) as scratch:
            download(NLTK_INDEX, Path(scratch) / "index.xml", expected=None)
            packages_listed = ElementTree.parse(Path(scratch) / "index.xml").iter("package")
            index = {element.get("id"): element for element in packages_listed}
        for package in wanted:
            if package.identifier not in index:
                raise DataSourceError(f"nltk's index ({NLTK_INDEX}) lists no package {package.identifier}")
            entry = index[package.identifier]
            download(entry.get("url"), mirror / package.relative_path, entry.get("checksum"), algorithm="md5")
            done.append(f"{package.relative_path}: fetched from {entry.get('url')}")
    return done


def write_checksums(mirror: Path) -> int:
    files = sorted(path for path in mirror.rglob("*")
                   if path.is_file() and path.name != CHECKSUMS and ".cache" not in path.relative_to(mirror).parts)
    (mirror / CHECKSUMS).write_text("".join(f"{sha256_of(path)}  {path.relative_to(mirror)}\n" for path in files))
    return len(files)


def build(mirror: Path, configfiles: list[str]) -> list[str]:
    """Fetch what every config needs into `mirror`; the report, one line each. Raises on the first thing that cannot
    be fetched, keeping everything fetched so far (a rerun resumes)."""
    mirror.mkdir(parents=True, exist_ok=True)
    report = []
    for configfile in configfiles:
        config = load_config(configfile, SCHEMA)
        report += fetch_files(config, mirror)
        wanted = needs(config, mirror=True)
        report += [fetch_model(name, mirror) for name in dict.fromkeys([*wanted.models, *wanted.stock_models])]
        report += [fetch_textattack(resource, mirror) for resource in wanted.textattack]
        report += fetch_nltk_packages(wanted.nltk, mirror)
    report.append(f"{CHECKSUMS}: {write_checksums(mirror)} files")
    return list(dict.fromkeys(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robustlm-mirror", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="fetch what the configs need into a mirror directory")
    build_command.add_argument("mirror", type=Path, help="the mirror directory (created, or completed)")
    build_command.add_argument("--configfile", action="append", required=True,
                               help="a workflow config (repeat for several)")
    arguments = parser.parse_args(argv)
    try:
        for line in build(arguments.mirror, arguments.configfile):
            print(line)
    except (ConfigError, DataSourceError) as exc:
        print(f"robustlm-mirror: {exc}", file=sys.stderr)
        return 1
    print(f"Run with ROBUSTLM_MIRROR={arguments.mirror.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
