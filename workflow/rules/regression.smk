rule regression_study:
    output:
        estimates="results/regression/theta_estimates.csv",
        table=report(
            "results/regression/table1.csv",
            caption="../../report/table1_regression.rst",
            category="Tables",
            labels={"table": "1: 1-D regression"},
        ),
        figure=report(
            "results/figures/figure1_regression.png",
            caption="../../report/figure1_regression.rst",
            category="Figures",
            labels={"figure": "1: 1-D regression"},
        ),
    log:
        "results/logs/regression_study.log",
    benchmark:
        "results/benchmarks/regression_study.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        spec=canonical(config.get("regression_study", {})),
    script:
        "../scripts/regression_study.py"
