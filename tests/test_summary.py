import json

import docutils.core
import jinja2
import pandas as pd
import pytest

from conftest import REPO, SCHEMA
from robustlm.config import canonical, load_config
from robustlm.summary import build_summary, job_times

RUN = {
    "device": "cpu (2 threads)",
    "provenance": {
        "code": {"commit": "0123456789abcdef", "dirty": False},
        "libraries": {"python": "3.11.7", "torch": "2.13.0", "transformers": "4.57.6", "textattack": "0.3.10"},
    },
}


def benchmark(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t100.0\n")
    return path


@pytest.fixture
def run(tmp_path):
    """A finished default run's inputs to the summary: its config, job timings, Table 2 and claims."""
    benchmarks = {
        "train": [benchmark(tmp_path / "train/a.tsv", 60.0), benchmark(tmp_path / "train/b.tsv", 120.0)],
        "attack": [benchmark(tmp_path / f"attack/{shard}.tsv", 30.0) for shard in range(4)],
        "augment": [],  # a run without data augmentation
    }
    metrics = tmp_path / "train_metrics.json"
    metrics.write_text(pd.Series(RUN).to_json())
    robustness = tmp_path / "table2_robustness.csv"
    pd.DataFrame(
        {
            "attack": ["textfooler", "bae", "average"],
            "dataset": "mr",
            "sampled": [8, 8, None],
            "examples": [5, 5, 5],
        }
    ).to_csv(robustness, index=False)
    claims = tmp_path / "claims.csv"
    pd.DataFrame(
        {
            "claim": ["a", "b", "c", "d"],
            "source": "Altinisik et al., §5",
            # text the report's Jinja would read as its own, were the summary not kept from it
            "statement": ["{{ held }}", "{% if %}", "{# x #}", "PGD-AT generalizes better than LDS"],
            "verdict": ["held", "inconclusive", "inconclusive", "not evaluated"],
            "comparisons": [2, 1, 1, 0],
            "missing": [None, "A2T_MLM, BERT_Attack", None, "PGD-AT, LDS"],
        }
    ).to_csv(claims, index=False)
    description = tmp_path / "workflow.rst"
    description.write_text('Models ({{ snakemake.config["model"] }}) were fine-tuned.\n')
    return dict(
        # as the rule hands it over: its keys sorted (the models are listed in the paper's order all the same)
        config=json.loads(canonical(load_config(REPO / "config/config.yaml", SCHEMA))),
        configfiles=["config/config.yaml"],
        train_metrics=[metrics],
        robustness=robustness,
        claims=claims,
        benchmarks=benchmarks,
        air_gapped=True,
        description=description,
        output=tmp_path / "summary.rst",
    )


def test_job_times_sum_each_stages_benchmarks_and_leave_out_stages_without_jobs(run):
    times = job_times(run["benchmarks"]).set_index("stage")
    assert list(times.index) == ["fine-tuning", "attacks"]
    assert times.loc["fine-tuning"].tolist() == [2, 3.0, 2.0]  # jobs, minutes summed, the longest job's minutes
    assert times.loc["attacks"].tolist() == [4, 2.0, 0.5]


def test_summary_says_what_ran_on_what_how_long_and_the_claims_verdicts(run):
    text = build_summary(**run)
    assert "9 models: BERT, SSMBA, BackTranslation, A2T, LDS, PGD-AT, PGD-AT @ epsilon=0.001, " in text
    assert "fine-tuned on mr (2,000 examples) with 1 seed and tested on mr (1,000) and yelp (500, out of dist" in text
    assert "correctly (5 of 8 on mr; paper: 1,000)" in text
    assert "POS taggers of BERT, PGD-AT and LDS" in text and "regression study, 25 runs" in text
    assert "from the air-gapped mirror; cpu (2 threads) (paper: V100); code 0123456; torch 2.13.0," in text
    assert "(paper: bert-base-uncased)" in text
    assert "5 minutes of jobs" in text
    assert "1 held, 0 not held, 2 inconclusive, 1 not evaluated" in text
    assert "A2T_MLM, BERT_Attack" in text and "nan" not in text
    assert str(run["output"].parent) not in text  # no path of this machine


def test_summary_renders_through_the_reports_jinja_and_restructuredtext_then_the_description(run):
    build_summary(**run)
    config = run["config"]

    class Snakemake:  # what the report's Jinja is handed
        pass

    Snakemake.config = config
    text = jinja2.Environment().from_string(run["output"].read_text()).render(snakemake=Snakemake)
    assert "{{ held }}" in text and "{% if %}" in text  # kept as written
    assert f"Models ({config['model']}) were fine-tuned." in text  # the description, rendered
    html = docutils.core.publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["html_body"]
    assert "Summary of this run" in html and html.count("<table") == 2
