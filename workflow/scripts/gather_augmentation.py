import json
from pathlib import Path

import pandas as pd

from robustlm.augmentation import gather_shards
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    reports = [json.loads(Path(path).read_text()) for path in snakemake.input.reports]
    frame, manifest = gather_shards(
        [pd.read_parquet(path) for path in snakemake.input.shards],
        reports,
        json.loads(snakemake.params.spec),
        Path(snakemake.input.data),
    )
    manifest["provenance"] = [report["provenance"] for report in reports]  # of the augment jobs, one per shard
    frame.to_parquet(snakemake.output.data, index=False)
    Path(snakemake.output.manifest).write_text(json.dumps(manifest, indent=2))
    print(json.dumps({key: manifest[key] for key in ("training_examples", "augmentations", "augmentation_seconds")}))
