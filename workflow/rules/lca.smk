# Linguistic Correlation Analysis (Tables 5-7): treebank -> POS tagger per defense -> NeuroX activations ->
# probe and neuron analyses -> tables. Activations are large and cheap to recompute, so they are temp().


# the treebank reads the mirror, or downloads its published file when none is configured; the tables read a few
# files: both run on the login node
localrules:
    prepare_treebank,
    lca_tables,


rule prepare_treebank:
    output:
        data="results/data/treebank.parquet",
        manifest="results/data/treebank.json",
    log:
        "results/logs/prepare_treebank.log",
    conda:
        "../../envs/data.yaml"
    params:
        spec=lambda wc: canonical({"split_seed": config["lca"]["split_seed"]}),
    script:
        "../scripts/prepare_treebank.py"


rule lca_finetune:
    input:
        data=rules.prepare_treebank.output.data,
    output:
        model=directory(f"{LCA_RUN}/model"),
        metrics=f"{LCA_RUN}/train_metrics.json",
    log:
        "results/logs/lca_finetune/{defense}/seed{seed}.log",
    benchmark:
        "results/benchmarks/lca_finetune/{defense}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 4
    resources:
        **rule_resources("train", gpu=1, mem_mb=16000, runtime=120),
    params:
        spec=lambda wc: canonical(lca_train_params(config, wc.defense, wc.seed)),
        checkpoints="results/checkpoints/lca/{defense}/seed{seed}",
    script:
        "../scripts/train.py"


rule lca_extract:
    input:
        model=rules.lca_finetune.output.model,
        data=rules.prepare_treebank.output.data,
    output:
        train=temp(f"{LCA_RUN}/activations/train.hdf5"),
        test=temp(f"{LCA_RUN}/activations/test.hdf5"),
    log:
        "results/logs/lca_extract/{defense}/seed{seed}.log",
    benchmark:
        "results/benchmarks/lca_extract/{defense}/seed{seed}.tsv"
    conda:
        "../../envs/lca.yaml"
    threads: 2
    resources:
        **rule_resources("lca", gpu=1, mem_mb=16000, runtime=60),
    params:
        spec=lambda wc: canonical(lca_extract_params(config)),
    script:
        "../scripts/lca_extract.py"


rule lca_probe:
    input:
        train=rules.lca_extract.output.train,
        test=rules.lca_extract.output.test,
        model=rules.lca_finetune.output.model,
        data=rules.prepare_treebank.output.data,
    output:
        analysis=f"{LCA_RUN}/lca.json",
    log:
        "results/logs/lca_probe/{defense}/seed{seed}.log",
    benchmark:
        "results/benchmarks/lca_probe/{defense}/seed{seed}.tsv"
    conda:
        "../../envs/lca.yaml"
    threads: 2
    resources:
        **rule_resources("lca", mem_mb=16000, runtime=60),
    params:
        spec=lambda wc: canonical(lca_probe_params(config)),
    script:
        "../scripts/lca_probe.py"


rule lca_tables:
    input:
        analyses=lca_outputs("lca.json"),
        train=lca_outputs("train_metrics.json"),
    output:
        association=report(
            "results/tables/table5_lca_association.csv",
            caption="../../report/table5_lca_association.rst",
            category="Tables",
            labels={"table": "5: neuron-tag association"},
        ),
        words=report(
            "results/tables/table6_lca_words.csv",
            caption="../../report/table6_lca_words.rst",
            category="Tables",
            labels={"table": "6: top words per tag"},
        ),
        ablation=report(
            "results/tables/table7_lca_ablation.csv",
            caption="../../report/table7_lca_ablation.rst",
            category="Tables",
            labels={"table": "7: top-neuron ablation"},
        ),
        paired=report(
            "results/tables/lca_paired_probes.csv",
            caption="../../report/lca_paired_probes.rst",
            category="Tables",
            labels={"table": "paired probe accuracy differences"},
        ),
        markdown="results/tables/lca.md",
        figure=report(
            "results/figures/lca_association.png",
            caption="../../report/lca_figure.rst",
            category="Figures",
            labels={"figure": "neuron-tag association"},
        ),
    log:
        "results/logs/lca_tables.log",
    conda:
        "../../envs/tables.yaml"
    script:
        "../scripts/lca_tables.py"
