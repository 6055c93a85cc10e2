import json
from pathlib import Path

import pandas as pd

from robustlm import defense_papers
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    generalization = pd.read_csv(snakemake.input.generalization)
    models = json.loads(snakemake.params.models)
    defense_papers.tat_glue(generalization, models).to_csv(
        Path(snakemake.output.glue), index=False, float_format="%.2f"
    )
    defense_papers.tat_zero_shot(generalization, models).to_csv(
        Path(snakemake.output.zero_shot), index=False, float_format="%.2f"
    )
