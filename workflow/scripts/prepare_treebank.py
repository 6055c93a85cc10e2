import json

from robustlm.config import mirror_dir
from robustlm.datasets.treebank import prepare_treebank
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    frame, manifest = prepare_treebank(mirror_dir(snakemake.config), snakemake.config["lca"]["split_seed"])
    frame.to_parquet(snakemake.output.data, index=False)
    with open(snakemake.output.manifest, "w") as handle:
        json.dump(manifest, handle, indent=2)
    print(json.dumps(manifest["splits"]))
