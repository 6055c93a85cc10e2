import json
from pathlib import Path

import torch

from robustlm.config import mirror_dir
from robustlm.logs import to_file
from robustlm.models import resolve_model
from robustlm.tagging import fine_tune_tagger
from robustlm.training import fine_tune

# sentiment classifiers (rule train) and the neuron analysis's POS taggers (rule lca_finetune) share the job;
# only the data side differs
fine_tune_job = fine_tune_tagger if snakemake.rule == "lca_finetune" else fine_tune

with to_file(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = json.loads(snakemake.params.spec)
    mirror = mirror_dir(snakemake.config)
    # data-augmentation defenses train on the augmented training set as well
    augmented = {"augmented_path": Path(snakemake.input.augmented)} if snakemake.input.get("augmented") else {}
    fine_tune_job(
        params,
        model_path=resolve_model(params["model"], mirror),
        data_path=Path(snakemake.input.data),
        output_dir=Path(snakemake.output.model),
        checkpoint_dir=Path(snakemake.params.checkpoints),
        metrics_path=Path(snakemake.output.metrics),
        mirror=mirror,
        **augmented,
    )
