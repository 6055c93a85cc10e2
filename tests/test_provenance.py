import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata

from conftest import REPO
from robustlm.config import canonical
from robustlm.provenance import job_provenance

SETTINGS = {"model": "bert-base-uncased", "seed": 3, "training": {"epochs": 1, "learning_rate": 1e-4}}


def git(directory, *args) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_settings_hash_identifies_the_canonical_settings():
    record = job_provenance(SETTINGS, "cpu")
    assert record["settings_hash"] == hashlib.sha256(canonical(SETTINGS).encode()).hexdigest()[:12]
    reordered = {"training": {"learning_rate": 1e-4, "epochs": 1}, "seed": 3, "model": "bert-base-uncased"}
    assert job_provenance(reordered, "cpu")["settings_hash"] == record["settings_hash"]
    changed = {**SETTINGS, "training": {"epochs": 2, "learning_rate": 1e-4}}
    assert job_provenance(changed, "cpu")["settings_hash"] != record["settings_hash"]
    assert record["seed"] == 3 and job_provenance({"batch_size": 32}, "cpu")["seed"] is None


def test_record_names_libraries_device_and_is_json():
    record = job_provenance(SETTINGS, "NVIDIA H100")
    assert record["libraries"]["python"] == platform.python_version()
    assert record["libraries"]["numpy"] == metadata.version("numpy")
    assert record["libraries"]["torch"] == metadata.version("torch")
    assert record["device"] == "NVIDIA H100" and record["utc"].endswith("+00:00")
    assert json.loads(json.dumps(record)) == record


def test_reading_versions_imports_no_library():
    probe = (
        "import sys; from robustlm.provenance import job_provenance; job_provenance({}, 'cpu'); "
        "print(sorted({'torch', 'transformers', 'textattack'} & set(sys.modules)))"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_code_version_is_the_commit_of_this_checkout():
    code = job_provenance(SETTINGS, "cpu")["code"]
    assert code["commit"] == git(REPO, "rev-parse", "HEAD")
    assert code["robustlm"] == metadata.version("robustlm")


def test_code_version_marks_uncommitted_changes(tmp_path):
    git(tmp_path, "init", "--quiet")
    (tmp_path / "module.py").write_text("answer = 42\n")
    git(tmp_path, "add", "module.py")
    git(tmp_path, "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "--quiet", "-m", "first")
    clean = job_provenance(SETTINGS, "cpu", checkout=tmp_path)["code"]
    assert clean["commit"] == git(tmp_path, "rev-parse", "HEAD") and clean["dirty"] is False
    (tmp_path / "module.py").write_text("answer = 43\n")
    assert job_provenance(SETTINGS, "cpu", checkout=tmp_path)["code"]["dirty"] is True


def test_code_version_is_unknown_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    unknown = {"commit": "unknown", "dirty": None, "robustlm": metadata.version("robustlm")}
    assert job_provenance(SETTINGS, "cpu", checkout=tmp_path)["code"] == unknown
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to be found
    assert job_provenance(SETTINGS, "cpu")["code"] == unknown
