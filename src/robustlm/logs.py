"""Rule scripts send everything they print (logging, warnings, progress, tracebacks) to the rule's `log:` file."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path


@contextlib.contextmanager
def to_file(path: str | Path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle, contextlib.redirect_stderr(handle), contextlib.redirect_stdout(handle):
        logging.basicConfig(
            stream=handle, level=logging.INFO, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        try:
            yield
        except BaseException:
            logging.exception("job failed")
            raise


class _LogLines:
    """A file tqdm can write to that is no terminal: each refresh becomes a line of its own (a log file keeps them
    all, so `tail -f` shows progress advancing instead of one line rewritten with carriage returns)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable=None, *, desc: str, total: int | None = None, unit: str = "it"):
    """tqdm with a count, rate and ETA, refreshed at most every 30 s: what a long job shows in its log."""
    from tqdm import tqdm

    stream = sys.stderr if sys.stderr.isatty() else _LogLines(sys.stderr)
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=stream, ascii=True, mininterval=30)
