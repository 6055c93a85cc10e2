import json
from pathlib import Path

from robustlm.logs import to_file
from robustlm.sweeps import build_sweep

with to_file(snakemake.log[0]):
    build_sweep(
        json.loads(snakemake.params.points),
        train_metrics=[Path(path) for path in snakemake.input.train],
        outputs={name: Path(path) for name, path in snakemake.output.items()},
    )
