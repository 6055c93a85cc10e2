"""Where a result came from: the record every job writes into its result (the hash of its settings, its seed, the
code version, library versions, device, host and time), so that each table number can name the runs behind it.

Cheap enough for every job: library versions come from package metadata (nothing is imported), the code version
from git. Records live in outputs only, never in a rule's params or inputs, so they cannot trigger reruns.
"""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .config import canonical

LIBRARIES = ("torch", "transformers", "textattack", "datasets", "numpy", "neurox", "snakemake")
# the library of the checkout the workflow runs: the Snakefile puts that checkout's src/ first on every job's path
PACKAGE_DIR = Path(__file__).resolve().parent


def job_provenance(settings: dict, device: str, checkout: Path = PACKAGE_DIR) -> dict:
    """The provenance record of a job run with `settings` (its parsed `params.spec`) on `device`.

    `settings_hash` is over the canonical serialization, the string Snakemake compares to decide reruns, so it
    identifies the settings whatever their key order. `seed` is the settings' own (null for jobs that draw nothing
    at random). The code version is the commit of the git checkout holding `checkout`, "unknown" outside one."""
    return {
        "settings_hash": hashlib.sha256(canonical(settings).encode()).hexdigest()[:12],
        "seed": settings.get("seed"),
        "code": _code_version(checkout),
        "libraries": {
            "python": platform.python_version(),
            **{name: version for name in LIBRARIES if (version := _installed(name))},
        },
        "device": str(device),
        "host": socket.gethostname(),
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _code_version(checkout: Path) -> dict:
    # a directory without tracked files (an installed copy that happens to sit in someone's repository) is not
    # that repository's code
    tracked = _git(checkout, "ls-files", "--", ".")
    commit = _git(checkout, "rev-parse", "HEAD") if tracked else None
    changes = _git(checkout, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "commit": commit or "unknown",
        "dirty": None if changes is None else bool(changes),
        "robustlm": _installed("robustlm"),
    }


def _git(directory: Path, *args: str) -> str | None:
    """git's output, or None where it fails, `directory` is no checkout, or git is missing."""
    try:
        result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
