# The report's first screen: what ran, on what, how long, and the claims' verdicts (src/robustlm/summary.py).
localrules:
    summary,


rule summary:
    input:
        **benchmarks(),
        train_metrics=run_outputs("train_metrics.json"),
        robustness=rules.robustness_tables.output.robustness if ATTACKS else [],
        claims=rules.claims.output.claims,
        description=Path(workflow.basedir) / "report/workflow.rst",
        # the run's other results, unread: the summary comes last and is rewritten whenever they change
        tables=rules.tables.output.markdown,
        lca=rules.lca_tables.output.markdown if "lca" in config else [],
        regression=rules.regression_study.output.table if "regression_study" in config else [],
        sweeps=[expand(rules.sweep.output, swept=swept, setting=setting) for swept, setting in SWEEPS],
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
    script:
        "../scripts/summary.py"
