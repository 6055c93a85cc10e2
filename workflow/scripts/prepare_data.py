import json

from robustlm import datasets
from robustlm.config import mirror_dir
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    frame, manifest = datasets.prepare(
        datasets.configured(snakemake.config, snakemake.wildcards.dataset),
        mirror_dir(snakemake.config),
        snakemake.config["data_seed"],
    )
    frame.to_parquet(snakemake.output.data, index=False)
    with open(snakemake.output.manifest, "w") as handle:
        json.dump(manifest, handle, indent=2)
    print(json.dumps(manifest["splits"]))
