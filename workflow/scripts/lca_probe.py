import json
from pathlib import Path

import torch

from robustlm.lca import analyse_model
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    analysis = analyse_model(Path(snakemake.input.model), Path(snakemake.input.data),
                             {"train": Path(snakemake.input.train), "test": Path(snakemake.input.test)},
                             json.loads(snakemake.params.spec))
    analysis = {"defense": snakemake.wildcards.defense, "seed": int(snakemake.wildcards.seed), **analysis}
    Path(snakemake.output.analysis).write_text(json.dumps(analysis, indent=2))
    print(json.dumps(analysis["probe_accuracy"]))
