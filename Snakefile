# robustlm: adversarial training of BERT-like language models, reproduced end to end.
# Configuration: config/config.yaml (small default run) or --configfile config/paper.yaml (the paper's grid).
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

# Every job runs the library of this checkout, also inside `--sdm conda` environments (envs/*.yaml hold
# only its dependencies): the Snakefile and the job processes it starts import it from src/.
SOURCE = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SOURCE)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [SOURCE, os.environ.get("PYTHONPATH")])))

from robustlm.config import ConfigError, mirror_dir, validate_config
from robustlm.requirements import MissingResources, check

min_version("9.0")


# `--configfile` names the whole configuration of a run: config/paper.yaml's grid is not merged into the default's.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# The report opens with the run's summary (rule summary, which holds report/workflow.rst after it) once there is one.
SUMMARY = Path("results/summary.rst")


report: str(SUMMARY.resolve()) if SUMMARY.exists() else "report/workflow.rst"


try:
    validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except ConfigError as error:
    raise WorkflowError(str(error)) from None


# Before any job: a run that cannot get its data, models or resources stops here with one message.
onstart:
    try:
        configfiles = " ".join(map(str, workflow.config_settings.configfiles)) or "config/config.yaml"
        check(config, mirror_dir(config), configfiles)
    except MissingResources as error:
        raise WorkflowError(str(error)) from None


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/augment.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/attack.smk"
include: "workflow/rules/regression.smk"
include: "workflow/rules/lca.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/summary.smk"


rule all:
    default_target: True
    input:
        rules.tables.output,
        rules.robustness_tables.output if "attacks" in config else [],
        rules.claims.output,
        rules.regression_study.output if "regression_study" in config else [],
        rules.lca_tables.output if "lca" in config else [],
        rules.rift_tables.output if RIFT_TABLES else [],
        rules.tat_tables.output if TAT_TABLES else [],
        [expand(rules.sweep.output, swept=swept, setting=setting) for swept, setting in SWEEPS],
        rules.summary.output,
