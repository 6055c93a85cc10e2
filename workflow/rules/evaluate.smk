rule evaluate:
    input:
        model=f"{RUNS}/model",
        data="results/data/{dataset}.parquet",
        ood=lambda wc: expand("results/data/{ood}.parquet", ood=ood_test_sets(config, wc.dataset)),
    output:
        metrics=f"{RUNS}/eval_metrics.json",
        predictions=f"{RUNS}/predictions.parquet",
    log:
        "results/logs/evaluate/{dataset}/{defense}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{defense}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 4
    resources:
        **rule_resources("evaluate", gpu=1, mem_mb=8000, runtime=60),
    params:
        spec=lambda wc: canonical(evaluate_params(config, wc.dataset)),
    script:
        "../scripts/evaluate.py"
