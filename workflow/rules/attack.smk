# Drawing the sample and gathering shards read and write a few files: on a cluster they run on the login node.
localrules:
    attack_sample,
    gather_attack,


rule attack_sample:
    input:
        data="results/data/{dataset}.parquet",
    output:
        sample="results/attacks/{dataset}/sample.parquet",
    log:
        "results/logs/attack_sample/{dataset}.log",
    conda:
        "../../envs/train.yaml"
    params:
        spec=lambda wc: canonical(attack_sample_params(config, wc.dataset)),
    script:
        "../scripts/attack_sample.py"


rule attack:
    input:
        model=f"{RUNS}/model",
        sample=rules.attack_sample.output.sample,
    output:
        shard=f"{ATTACK_RUN}/shard{{shard}}of{{shards}}.json",
    log:
        "results/logs/attack/{dataset}/{defense}/seed{seed}/{attack}/shard{shard}of{shards}.log",
    benchmark:
        "results/benchmarks/attack/{dataset}/{defense}/seed{seed}/{attack}/shard{shard}of{shards}.tsv"
    conda:
        "../../envs/attack.yaml"
    threads: 2
    resources:
        **rule_resources("attack", gpu=1, mem_mb=16000, runtime=240),
    params:
        spec=lambda wc: canonical(attack_params(config, wc.attack)),
        # outside the declared outputs, so Snakemake does not delete it before a rerun resumes from it
        checkpoint="results/checkpoints/attacks/{dataset}/{defense}/seed{seed}/{attack}/shard{shard}of{shards}.jsonl",
    script:
        "../scripts/attack.py"


rule gather_attack:
    input:
        shards=lambda wc: expand(
            f"{ATTACK_RUN}/shard{{shard}}of{{shards}}.json",
            **wc,
            shard=range(config["attacks"]["shards"]),
            shards=config["attacks"]["shards"],
        ),
        sample=rules.attack_sample.output.sample,
    output:
        examples=f"{ATTACK_RUN}/adversarial_examples.csv",
        summary=f"{ATTACK_RUN}/attack_summary.json",
    log:
        "results/logs/gather_attack/{dataset}/{defense}/seed{seed}/{attack}.log",
    conda:
        "../../envs/tables.yaml"
    params:
        spec=lambda wc: canonical(attack_params(config, wc.attack)),
    script:
        "../scripts/gather_attack.py"
