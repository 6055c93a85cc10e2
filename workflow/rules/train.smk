rule train:
    input:
        data="results/data/{dataset}.parquet",
        augmented=augmented_training_set,
    output:
        model=directory(f"{RUNS}/model"),
        metrics=f"{RUNS}/train_metrics.json",
    log:
        "results/logs/train/{dataset}/{defense}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{defense}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 4
    resources:
        **rule_resources("train", gpu=1, mem_mb=16000, runtime=240),
    params:
        spec=lambda wc: canonical(train_params(config, wc.dataset, wc.defense, wc.seed)),
        # outside the declared outputs, so Snakemake does not delete them before a rerun resumes from them
        checkpoints="results/checkpoints/{dataset}/{defense}/seed{seed}",
    script:
        "../scripts/train.py"
