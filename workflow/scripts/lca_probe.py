import json
from pathlib import Path

import torch

from robustlm.evaluation import resolve_device
from robustlm.lca import analyse_model
from robustlm.logs import to_file
from robustlm.provenance import job_provenance

with to_file(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = json.loads(snakemake.params.spec)
    analysis = analyse_model(
        Path(snakemake.input.model),
        Path(snakemake.input.data),
        {"train": Path(snakemake.input.train), "test": Path(snakemake.input.test)},
        params,
    )
    analysis = {
        "defense": snakemake.wildcards.defense,
        "seed": int(snakemake.wildcards.seed),
        **analysis,
        # NeuroX trains its probes on the GPU when there is one
        "provenance": job_provenance(params, str(resolve_device())),
    }
    Path(snakemake.output.analysis).write_text(json.dumps(analysis, indent=2))
    print(json.dumps(analysis["probe_accuracy"]))
