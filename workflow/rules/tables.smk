rule tables:
    input:
        train=run_outputs("train_metrics.json"),
        evaluation=run_outputs("eval_metrics.json"),
    output:
        generalization=report(
            "results/tables/table4_generalization.csv",
            caption="../../report/table4_generalization.rst",
            category="Tables",
            labels={"table": "4: generalization"},
        ),
        runtime=report(
            "results/tables/table3_runtime.csv",
            caption="../../report/table3_runtime.rst",
            category="Tables",
            labels={"table": "3: fine-tuning run time"},
        ),
        paper_vs_ours=report(
            "results/tables/paper_vs_ours.csv",
            caption="../../report/paper_vs_ours.rst",
            category="Tables",
            labels={"table": "paper vs. ours"},
        ),
        markdown="results/tables/tables.md",
        figure=report(
            "results/figures/generalization.png",
            caption="../../report/generalization_figure.rst",
            category="Figures",
            labels={"figure": "generalization"},
        ),
    log:
        "results/logs/tables.log",
    conda:
        "../../envs/tables.yaml"
    script:
        "../scripts/tables.py"
