import json
import time
from pathlib import Path

import pandas as pd
import torch

from robustlm.attacks.runner import fingerprint, load_attack, model_fingerprint, run_shard
from robustlm.config import mirror_dir
from robustlm.evaluation import resolve_device
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = json.loads(snakemake.params.spec)
    model_dir = Path(snakemake.input.model)
    sample = pd.read_parquet(snakemake.input.sample)
    started = time.perf_counter()
    attack, substitutions = load_attack(params["attack"], params, model_dir, mirror_dir(snakemake.config),
                                        resolve_device())
    checkpoint = Path(snakemake.params.checkpoint)
    examples = run_shard(
        attack, sample, int(snakemake.wildcards.shard), int(snakemake.wildcards.shards), params["seed"], checkpoint,
        key=fingerprint(params, model_fingerprint(model_dir), list(sample.id)),
    )
    Path(snakemake.output.shard).write_text(json.dumps({
        "substitutions": substitutions, "examples": examples, "job_seconds": time.perf_counter() - started,
        "device": str(torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"),
    }))
    checkpoint.unlink()
