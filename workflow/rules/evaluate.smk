rule evaluate:
    input:
        model=f"{RUNS}/model",
        data="results/data/{dataset}.parquet",
        ood=expand("results/data/{ood}.parquet", ood=OOD_DATASETS),
    output:
        metrics=f"{RUNS}/eval_metrics.json",
        predictions=f"{RUNS}/predictions.parquet",
    params:
        spec=lambda wc: canonical(evaluate_params(config, wc.dataset)),
    log:
        "results/logs/evaluate/{dataset}/{defense}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{defense}/seed{seed}.tsv"
    threads: 4
    resources:
        **rule_resources("evaluate", gpu=1, mem_mb=8000, runtime=60),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/evaluate.py"
