AUGMENTED = "results/augmented/{dataset}/{defense}"


# gathering shards: on a cluster, on the login node
localrules:
    gather_augmentation,


rule augment:
    input:
        data="results/data/{dataset}.parquet",
    output:
        shard=f"{AUGMENTED}/shard{{shard}}of{{shards}}.parquet",
        report=f"{AUGMENTED}/shard{{shard}}of{{shards}}.json",
    log:
        "results/logs/augment/{dataset}/{defense}/shard{shard}of{shards}.log",
    benchmark:
        "results/benchmarks/augment/{dataset}/{defense}/shard{shard}of{shards}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        **rule_resources("augment", gpu=1, mem_mb=16000, runtime=240),
    params:
        spec=lambda wc: canonical(augment_params(config, wc.dataset, wc.defense)),
        # outside the declared outputs, so Snakemake does not delete it before a rerun resumes from it
        checkpoint="results/checkpoints/augment/{dataset}/{defense}/shard{shard}of{shards}.jsonl",
    script:
        "../scripts/augment.py"


rule gather_augmentation:
    input:
        data="results/data/{dataset}.parquet",
        shards=lambda wc: augmentation_shards(wc, "parquet"),
        reports=lambda wc: augmentation_shards(wc, "json"),
    output:
        data=f"{AUGMENTED}.parquet",
        manifest=f"{AUGMENTED}.json",
    log:
        "results/logs/gather_augmentation/{dataset}/{defense}.log",
    conda:
        "../../envs/tables.yaml"
    params:
        spec=lambda wc: canonical(augment_params(config, wc.dataset, wc.defense)),
    script:
        "../scripts/gather_augmentation.py"
