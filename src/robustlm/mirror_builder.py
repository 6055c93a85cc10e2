"""`robustlm-mirror build DIR --configfile CONFIG`: on a machine with internet, fetch every published file, hub
model, hub dataset and stock TextAttack resource a configuration reads into DIR, in the mirror layout, with a
SHA256SUMS over it all. An air-gapped site then runs that configuration with ROBUSTLM_MIRROR=DIR (or `mirror: DIR`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import datasets
from .config import ConfigError, load_config
from .models import WEIGHT_FILES
from .requirements import needs
from .sources import DataSourceError, download, fetch_nltk_packages, sha256_of

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
CHECKSUMS = "SHA256SUMS"
# what a model directory needs (PyTorch weights, configuration, tokenizer), not other frameworks' copies
MODEL_FILES_SKIPPED = [
    "*.h5",
    "*.msgpack",
    "*.onnx",
    "*.ot",
    "*.tflite",
    "tf_model*",
    "flax_model*",
    "rust_model*",
    "onnx/*",
    "coreml/*",
    "openvino/*",
]


def fetch_model(name: str, mirror: Path) -> str:
    """`name` from the Hugging Face hub ($HF_ENDPOINT) into <mirror>/models/<name>; what was done, in words."""
    if Path(name).is_dir():
        return f"model {name}: a local directory, read in place (copy it beside the mirror if the site cannot see it)"
    if name.startswith("models/"):
        if (mirror / name / "config.json").is_file():
            return f"model {name}: present"
        raise DataSourceError(f"model {name}: a mirror's own model, published on no hub; copy it into {mirror / name}")
    target = mirror / "models" / name
    if any((target / file).is_file() for file in ("config.json", *WEIGHT_FILES)):  # flair's models have no config
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
        elif file.url is None:
            raise DataSourceError(
                f"{file.relative_path}: {file.what} has no published location; copy it from a mirror that holds it"
            )
        else:
            download(file.url, path, file.sha256)
            done.append(f"{file.relative_path}: fetched from {file.url}")
    return done


def fetch_hub_datasets(config: dict, mirror: Path) -> list[str]:
    """The files the config's datasets read from the hub, into the mirror's datasets/hub/."""
    return [
        f"{file.relative_path}: "
        + (f"fetched from hub dataset {file.repository}" if file.fetch_into(mirror) else "present")
        for name in [*config["datasets"], *config.get("ood_datasets", {})]
        for file in datasets.configured(config, name).hub_files()
    ]


def write_checksums(mirror: Path) -> int:
    files = sorted(
        path
        for path in mirror.rglob("*")
        if path.is_file() and path.name != CHECKSUMS and ".cache" not in path.relative_to(mirror).parts
    )
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
        report += fetch_hub_datasets(config, mirror)
        wanted = needs(config, mirror=True)
        report += [fetch_model(name, mirror) for name in dict.fromkeys([*wanted.models, *wanted.stock_models])]
        report += [
            f"{resource.relative_path}: "
            + ("fetched from " + resource.url if resource.fetch_into(mirror) else "present")
            for resource in wanted.textattack
        ]
        fetched = fetch_nltk_packages(wanted.nltk, mirror)
        report += [
            f"{package.relative_path}: " + ("fetched" if package in fetched else "present") for package in wanted.nltk
        ]
    report.append(f"{CHECKSUMS}: {write_checksums(mirror)} files")
    return list(dict.fromkeys(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robustlm-mirror", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="fetch what the configs need into a mirror directory")
    build_command.add_argument("mirror", type=Path, help="the mirror directory (created, or completed)")
    build_command.add_argument(
        "--configfile", action="append", required=True, help="a workflow config (repeat for several)"
    )
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
