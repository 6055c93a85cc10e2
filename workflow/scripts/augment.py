import json
from pathlib import Path

import torch

from robustlm.augmentation import augment_shard
from robustlm.config import mirror_dir
from robustlm.evaluation import resolve_device
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    frame, report = augment_shard(
        json.loads(snakemake.params.spec), Path(snakemake.input.data), int(snakemake.wildcards.shard),
        int(snakemake.wildcards.shards), mirror_dir(snakemake.config),
        resolve_device())
    frame.to_parquet(snakemake.output.shard, index=False)
    Path(snakemake.output.report).write_text(json.dumps(report, indent=2))
    print(f"{len(frame)} augmentations of {len(report['source_ids'])} examples in {report['seconds']:.1f} s")
