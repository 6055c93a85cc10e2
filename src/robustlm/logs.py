"""Rule scripts send everything they print (logging, warnings, tqdm, tracebacks) to the rule's `log:` file."""

from __future__ import annotations

import contextlib
import logging
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
