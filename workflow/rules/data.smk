# The only rule that may touch the network (hub downloads when no mirror is configured): run it on the
# login node, never inside a compute job.
localrules:
    prepare_data,


rule prepare_data:
    input:
        own_files=lambda wc: configured_dataset(config, wc.dataset).local_files(),
    output:
        data="results/data/{dataset}.parquet",
        manifest="results/data/{dataset}.json",
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    params:
        spec=lambda wc: canonical(
            {"data_seed": config["data_seed"], **configured_dataset(config, wc.dataset).settings()}
        ),
    script:
        "../scripts/prepare_data.py"
