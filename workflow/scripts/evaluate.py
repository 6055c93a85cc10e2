import json
from pathlib import Path

import torch

from robustlm.evaluation import evaluate_model
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    evaluate_model(
        json.loads(snakemake.params.spec),
        model_dir=Path(snakemake.input.model),
        data_paths={Path(path).stem: Path(path) for path in [snakemake.input.data, *snakemake.input.ood]},
        metrics_path=Path(snakemake.output.metrics),
        predictions_path=Path(snakemake.output.predictions),
    )
