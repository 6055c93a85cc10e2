# Assembling tables and figures reads a few files: on a cluster these run on the login node, not as jobs.
localrules:
    tables,
    robustness_tables,
    claims,
    sweep,


rule tables:
    input:
        train=run_outputs("train_metrics.json"),
        evaluation=run_outputs("eval_metrics.json"),
        predictions=run_outputs("predictions.parquet"),
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
        paired=report(
            "results/tables/paired_accuracy.csv",
            caption="../../report/paired_accuracy.rst",
            category="Tables",
            labels={"table": "paired accuracy differences"},
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


rule robustness_tables:
    input:
        summaries=attack_outputs("attack_summary.json"),
        examples=attack_outputs("adversarial_examples.csv"),
        train=run_outputs("train_metrics.json"),
        evaluation=run_outputs("eval_metrics.json"),
    output:
        robustness=report(
            "results/tables/table2_robustness.csv",
            caption="../../report/table2_robustness.rst",
            category="Tables",
            labels={"table": "2: robustness"},
        ),
        substitutions=report(
            "results/tables/attack_substitutions.csv",
            caption="../../report/attack_substitutions.rst",
            category="Tables",
            labels={"table": "attack resources substituted offline"},
        ),
        paired=report(
            "results/tables/paired_asr.csv",
            caption="../../report/paired_asr.rst",
            category="Tables",
            labels={"table": "paired attack success rate differences"},
        ),
        markdown="results/tables/table2_robustness.md",
        figure=report(
            "results/figures/robustness_vs_generalization.png",
            caption="../../report/robustness_figure.rst",
            category="Figures",
            labels={"figure": "robustness vs. generalization"},
        ),
    log:
        "results/logs/robustness_tables.log",
    conda:
        "../../envs/tables.yaml"
    params:
        ood_test_set=OOD_DATASETS[0] if OOD_DATASETS else None,
    script:
        "../scripts/robustness_tables.py"


rule sweep:
    input:
        train=lambda wc: sweep_outputs(wc, "train_metrics.json"),
        evaluation=lambda wc: sweep_outputs(wc, "eval_metrics.json"),
        summaries=sweep_attack_outputs,
    output:
        table=report(
            "results/sweeps/{swept}/{setting}.csv",
            caption="../../report/sweep_table.rst",
            category="Sweeps",
            labels={"sweep": "{swept}: {setting}", "kind": "table"},
        ),
        figure=report(
            "results/sweeps/{swept}/{setting}.png",
            caption="../../report/sweep_figure.rst",
            category="Sweeps",
            labels={"sweep": "{swept}: {setting}", "kind": "figure"},
        ),
    log:
        "results/logs/sweep/{swept}/{setting}.log",
    conda:
        "../../envs/tables.yaml"
    params:
        points=lambda wc: canonical(points_of(wc)),
    script:
        "../scripts/sweep.py"


rule claims:
    input:
        paired_accuracy=rules.tables.output.paired,
        paired_asr=rules.robustness_tables.output.paired if "attacks" in config else [],
        paired_probes=rules.lca_tables.output.paired if "lca" in config else [],
    output:
        claims=report(
            "results/tables/claims.csv",
            caption="../../report/claims.rst",
            category="Tables",
            labels={"table": "the papers' claims"},
        ),
        markdown="results/tables/claims.md",
    log:
        "results/logs/claims.log",
    conda:
        "../../envs/tables.yaml"
    script:
        "../scripts/claims.py"


localrules:
    rift_tables,
    tat_tables,


rule rift_tables:
    input:
        robustness=rules.robustness_tables.output.robustness,
        generalization=rules.tables.output.generalization,
    output:
        robust_accuracy=report(
            "results/tables/rift_robust_accuracy.csv",
            caption="../../report/rift_robust_accuracy.rst",
            category="RIFT and TAT",
            labels={"table": "RIFT 1-2: accuracy under attack"},
        ),
        mutual_information=report(
            "results/tables/rift_mutual_information.csv",
            caption="../../report/rift_mutual_information.rst",
            category="RIFT and TAT",
            labels={"table": "RIFT 3: I(S;T|Y) vs I(S;T)"},
        ),
        alpha=report(
            "results/tables/rift_alpha.csv",
            caption="../../report/rift_alpha.rst",
            category="RIFT and TAT",
            labels={"table": "RIFT 4: alpha"},
        ),
    log:
        "results/logs/rift_tables.log",
    conda:
        "../../envs/tables.yaml"
    params:
        models=lambda wc: canonical(defense_paper_models(defense_papers.RIFT_METHODS)),
    script:
        "../scripts/rift_tables.py"


rule tat_tables:
    input:
        generalization=rules.tables.output.generalization,
    output:
        glue=report(
            "results/tables/tat_glue.csv",
            caption="../../report/tat_glue.rst",
            category="RIFT and TAT",
            labels={"table": "TAT 1: GLUE"},
        ),
        zero_shot=report(
            "results/tables/tat_zero_shot.csv",
            caption="../../report/tat_zero_shot.rst",
            category="RIFT and TAT",
            labels={"table": "TAT 2: zero-shot NLI"},
        ),
    log:
        "results/logs/tat_tables.log",
    conda:
        "../../envs/tables.yaml"
    params:
        models=lambda wc: canonical(defense_paper_models(defense_papers.TAT_METHODS)),
    script:
        "../scripts/tat_tables.py"
