from pathlib import Path

from robustlm.logs import to_file
from robustlm.robustness import build_robustness_tables

with to_file(snakemake.log[0]):
    build_robustness_tables(
        summaries=[Path(path) for path in snakemake.input.summaries],
        ood_test_set=snakemake.params.ood_test_set,
        outputs={name: Path(path) for name, path in snakemake.output.items()},
    )
