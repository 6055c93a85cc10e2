import json
from pathlib import Path

import pandas as pd

from robustlm.attacks.runner import gather
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    params = json.loads(snakemake.params.spec)
    shards = [json.loads(Path(path).read_text()) for path in snakemake.input.shards]
    examples, summary = gather(shards, pd.read_parquet(snakemake.input.sample))
    examples.to_csv(snakemake.output.examples, index=False)
    summary = {
        "dataset": snakemake.wildcards.dataset,
        "defense": snakemake.wildcards.defense,
        "seed": int(snakemake.wildcards.seed),
        "attack": params["attack"],
        "settings": params,
        "shards": len(shards),
        "job_seconds": sum(shard["job_seconds"] for shard in shards),
        "device": shards[0]["device"],
        **summary,
        "provenance": [shard["provenance"] for shard in shards],  # of the attack jobs, one per shard
    }
    Path(snakemake.output.summary).write_text(json.dumps(summary, indent=2))
