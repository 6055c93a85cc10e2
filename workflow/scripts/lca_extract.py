import json
from pathlib import Path

import torch

from robustlm.lca import extract_model
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    extract_model(
        Path(snakemake.input.model),
        Path(snakemake.input.data),
        json.loads(snakemake.params.spec),
        {split: Path(path) for split, path in snakemake.output.items()},
    )
