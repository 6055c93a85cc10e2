# The report's first screen: what ran, on what, how long, and the claims' verdicts (src/robustlm/summary.py).
localrules:
    summary,


rule summary:
    input:
        **benchmarks(),
        train_metrics=run_outputs("train_metrics.json"),
        tables=rules.tables.output.markdown,
        robustness=rules.robustness_tables.output.robustness if ATTACKS else [],
        claims=rules.claims.output.claims,
        lca=rules.lca_tables.output.markdown if "lca" in config else [],
        regression=rules.regression_study.output.table if "regression_study" in config else [],
        sweeps=[expand(rules.sweep.output, swept=swept, setting=setting) for swept, setting in SWEEPS],
        description=Path(workflow.basedir) / "report/workflow.rst",
    output:
        str(SUMMARY),
    log:
        "results/logs/summary.log",
    conda:
        "../../envs/tables.yaml"
    params:
        config=canonical(config),
        configfiles=[os.path.relpath(path) for path in workflow.config_settings.configfiles] or ["config/config.yaml"],
        air_gapped=mirror_dir(config) is not None,
        stages=list(benchmarks()),
    script:
        "../scripts/summary.py"
