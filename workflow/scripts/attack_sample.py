import json

from robustlm import datasets
from robustlm.logs import to_file

with to_file(snakemake.log[0]):
    params = json.loads(snakemake.params.spec)
    evaluated = datasets.select(
        datasets.read_split(snakemake.input.data, "test"), params["test_size"], params["data_seed"]
    )
    columns = ["id", "text", datasets.TEXT_PAIR, "label"] if datasets.has_pairs(evaluated) else ["id", "text", "label"]
    sample = datasets.select(evaluated, params["examples"], params["seed"])[columns]
    sample.to_parquet(snakemake.output.sample, index=False)
    print(f"{len(sample)} of the {len(evaluated)} evaluated test examples sampled for attacks")
