import json
from pathlib import Path

import torch

from robustlm.augmentation import augment_shard
from robustlm.config import mirror_dir
from robustlm.evaluation import resolve_device
from robustlm.logs import to_file
from robustlm.provenance import job_provenance

with to_file(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = json.loads(snakemake.params.spec)
    checkpoint = Path(snakemake.params.checkpoint)
    frame, report = augment_shard(
        params,
        Path(snakemake.input.data),
        int(snakemake.wildcards.shard),
        int(snakemake.wildcards.shards),
        mirror_dir(snakemake.config),
        resolve_device(),
        checkpoint,
    )
    frame.to_parquet(snakemake.output.shard, index=False)
    report["provenance"] = job_provenance(params, report["device"])
    Path(snakemake.output.report).write_text(json.dumps(report, indent=2))
    checkpoint.unlink()
    print(
        f"{len(frame)} augmentations of {len(report['source_ids'])} examples ({report['resumed_examples']} resumed) "
        f"in {report['seconds']:.1f} s"
    )
