"""Per-example checkpoints of the resumable sharded jobs (attack shards, input-space adversarial generation,
augmentation shards): a JSON-lines file whose first line is the job's key (a fingerprint of everything its
results depend on), then one record per finished example, appended as it finishes, so that a killed job
resumes where it stopped. A checkpoint with another key is ignored; a torn last line (killed mid-write) is
dropped; any other unreadable line is an error naming the file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    pass


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def read_checkpoint(path: Path, key: str) -> dict[str, dict]:
    """Finished examples (records by `id`) of an interrupted run with the same `key`."""
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()
    if not lines or json.loads(lines[0]).get("key") != key:
        log.warning("checkpoint %s belongs to another job or setting; starting over", path)
        return {}
    done = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number != len(lines):
                raise CheckpointError(
                    f"checkpoint {path} is corrupt at line {number}; delete it to restart the job"
                ) from None
            log.warning("dropping a partly written last line of %s", path)
            continue
        done[record["id"]] = record
    log.info("resuming from %s: %d examples already done", path, len(done))
    return done


@contextmanager
def resumed(path: Path, key: str) -> Iterator[tuple[dict[str, dict], Callable[[dict], None]]]:
    """The finished examples of an earlier run with `key` (records by `id`) and a function that adds a newly
    finished one to them and to `path`, durably before it returns."""
    done = read_checkpoint(path, key)
    # rewritten with the finished examples only, so that appending never follows a torn line
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text("".join(json.dumps(record) + "\n" for record in [{"key": key}, *done.values()]))
    os.replace(partial, path)
    with path.open("a") as handle:

        def finish(record: dict) -> None:
            done[record["id"]] = record
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

        yield done, finish
