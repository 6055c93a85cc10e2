import json
from pathlib import Path

from robustlm.logs import to_file
from robustlm.summary import STAGES, build_summary

with to_file(snakemake.log[0]):
    build_summary(
        config=json.loads(snakemake.params.config),
        configfiles=snakemake.params.configfiles,
        train_metrics=[Path(path) for path in snakemake.input.train_metrics],
        robustness=Path(snakemake.input.robustness) if snakemake.input.robustness else None,
        claims=Path(snakemake.input.claims),
        benchmarks={stage: [Path(path) for path in snakemake.input[stage]] for stage in STAGES},
        air_gapped=snakemake.params.air_gapped,
        description=Path(snakemake.input.description),
        output=Path(snakemake.output[0]),
    )
