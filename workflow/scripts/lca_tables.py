from pathlib import Path

from robustlm.lca_tables import build_lca_tables
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    build_lca_tables(
        analyses=[Path(path) for path in snakemake.input.analyses],
        train_metrics=[Path(path) for path in snakemake.input.train],
        outputs={name: Path(path) for name, path in snakemake.output.items()},
    )
