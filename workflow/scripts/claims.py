from pathlib import Path

from robustlm.claims import build_claims
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    build_claims(
        paired_accuracy=Path(snakemake.input.paired_accuracy),
        paired_asr=Path(snakemake.input.paired_asr) if snakemake.input.paired_asr else None,
        paired_probes=Path(snakemake.input.paired_probes) if snakemake.input.paired_probes else None,
        outputs={name: Path(path) for name, path in snakemake.output.items()},
    )
