import json
import time
from pathlib import Path

import pandas as pd
import torch

from robustlm.attacks.runner import load_attack, model_fingerprint, population_search, run_shard
from robustlm.config import mirror_dir
from robustlm.evaluation import device_name, resolve_device
from robustlm.jsonl_checkpoint import fingerprint
from robustlm.logs import to_file
from robustlm.provenance import job_provenance

with to_file(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = json.loads(snakemake.params.spec)
    model_dir = Path(snakemake.input.model)
    sample = pd.read_parquet(snakemake.input.sample)
    started = time.perf_counter()
    device = resolve_device()
    attack, substitutions = load_attack(params["attack"], params, model_dir, mirror_dir(snakemake.config), device)
    checkpoint = Path(snakemake.params.checkpoint)
    examples = run_shard(
        attack,
        sample,
        int(snakemake.wildcards.shard),
        int(snakemake.wildcards.shards),
        params["seed"],
        checkpoint,
        key=fingerprint(params, model_fingerprint(model_dir), list(sample.id)),
    )
    Path(snakemake.output.shard).write_text(
        json.dumps(
            {
                "substitutions": substitutions,
                "search": population_search(attack),
                "examples": examples,
                "job_seconds": time.perf_counter() - started,
                "device": device_name(device),
                "provenance": job_provenance(params, device_name(device)),
            }
        )
    )
    checkpoint.unlink()
