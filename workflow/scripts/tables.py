from pathlib import Path

from robustlm.logs import to_file
from robustlm.tables import build_tables

with to_file(snakemake.log[0]):
    build_tables(
        train_metrics=[Path(path) for path in snakemake.input.train],
        eval_metrics=[Path(path) for path in snakemake.input.evaluation],
        predictions=[Path(path) for path in snakemake.input.predictions],
        outputs={name: Path(path) for name, path in snakemake.output.items()},
    )
