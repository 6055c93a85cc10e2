import json
from pathlib import Path

import pandas as pd

from robustlm import defense_papers
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    robustness = pd.read_csv(snakemake.input.robustness)
    generalization = pd.read_csv(snakemake.input.generalization)
    models = json.loads(snakemake.params.models)
    tables = {
        "robust_accuracy": defense_papers.rift_robust_accuracy(robustness, generalization, models),
        "mutual_information": defense_papers.rift_mutual_information(robustness, models),
        "alpha": defense_papers.rift_alpha(robustness, generalization, models),
    }
    for name, table in tables.items():
        table.to_csv(Path(snakemake.output[name]), index=False, float_format="%.2f")
