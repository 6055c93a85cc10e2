"""Fine-tuning throughput of the project's training step per defense, against a plain PyTorch loop (forward
with labels, backward, AdamW) on the same model, batches and dtype in the same run. Prints examples/s,
tokens/s, ms/step, the slowdown relative to the plain loop and, given the device's peak, the model FLOP
utilisation.

    python benchmarks/finetune_throughput.py --random-init bert-base --defenses baseline pgd_at rift
    python benchmarks/finetune_throughput.py --smoke

The project's step is train_model's: the batch collated onto the device and marked non-adversarial, then
`training.train_step` (the defense's gradients under autocast, clipping, AdamW, schedule) with the optimizer
of `training.build_optimizer`, after the defense's `prepare`. Defense hyperparameters and the training
settings (learning rate, weight decay, clipping, warmup) come from `--config`. Batches are random token ids of
exactly `--seq-len`, so that tokens/s are well defined; `--random-init` gives random weights of a real size
(weights need not be trained for throughput), with the vocabulary of `--model`'s tokenizer. bf16 is autocast over
fp32 weights, as in training.

MFU counts 6 x parameters x tokens per forward+backward pass (embeddings included, attention scores not)
times a defense's passes per step, as train_model's `passes_per_step` does; RIFT's frozen-teacher forward
is not counted. The default peak is the dense bf16 of an H100 SXM (and H200), used only for bf16 on those.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import BertConfig, BertForSequenceClassification, get_linear_schedule_with_warmup

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from robustlm.config import defense_params, load_config, method_of, training_settings  # noqa: E402
from robustlm.defenses import DEFENSES, Defense, TrainingContext, build_defense  # noqa: E402
from robustlm.evaluation import collate, device_name, resolve_device  # noqa: E402
from robustlm.models import load_classifier, load_tokenizer, resolve_model  # noqa: E402
from robustlm.training import build_optimizer, set_seed, train_step  # noqa: E402

DEFAULT_DEFENSES = ["baseline", "pgd_at", "lds", "freelb", "tat", "rift"]
RANDOM_INIT_SIZES = {
    "bert-base": {},
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
}
SMOKE = {"random_init": "tiny", "seq_len": 32, "batch_size": 4, "steps": 2, "warmup": 1}
HOPPER_DENSE_BF16_TFLOPS = 989.0  # H100 SXM and H200: the same tensor cores
SEED = 0

Batch = tuple[list[list[int]], list[int]]  # token ids and labels, on the host as train_model's epoch data


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    step: Callable[[Batch], None], batches: list[Batch], warmup: int, device: torch.device, report_syncs: bool = False
) -> float:
    """Seconds for the batches after the first `warmup`; the device is synchronised around them only. With
    `report_syncs`, every place in the timed steps that makes the host wait for the GPU is warned about once."""
    for batch in batches[:warmup]:
        step(batch)
    synchronize(device)
    if report_syncs:
        torch.cuda.set_sync_debug_mode("warn")
    started = time.perf_counter()
    for batch in batches[warmup:]:
        step(batch)
    if report_syncs:
        torch.cuda.set_sync_debug_mode("default")
    synchronize(device)
    return time.perf_counter() - started


def plain_loop(model, settings: dict, device: torch.device, autocast) -> Callable[[Batch], None]:
    """The reference: plain fine-tuning, without the project's loop and defenses."""
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=settings["learning_rate"],
        weight_decay=settings["weight_decay"],
        fused=device.type == "cuda",
    )

    def step(batch: Batch):
        ids, labels = batch
        with autocast():
            input_ids = torch.tensor(ids, device=device)
            loss = model(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                labels=torch.tensor(labels, device=device),
            ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def project_step(
    defense: Defense, model, tokenizer, settings: dict, total_steps: int, device: torch.device, autocast
) -> Callable[[Batch], None]:
    """train_model's optimizer, scheduler and step (see the module docstring)."""
    optimizer = build_optimizer(model, defense, settings, device)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(settings["warmup_ratio"] * total_steps), total_steps)

    def step(batch: Batch):
        ids, labels = batch
        batch = collate(tokenizer, ids, labels, device)
        batch["adversarial"] = torch.zeros(len(ids), dtype=torch.bool, device=device)
        train_step(defense, model, batch, optimizer, scheduler, settings["max_grad_norm"], autocast)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default="models/minilm-l6-h384-uncased-mlm",
        help="classifier or pre-trained model directory, or a name in the mirror",
    )
    parser.add_argument(
        "--random-init",
        choices=sorted(RANDOM_INIT_SIZES),
        help="random weights instead of --model's: BERT-base-sized, or 2 layers of width 32",
    )
    parser.add_argument("--defenses", nargs="+", default=DEFAULT_DEFENSES)
    parser.add_argument(
        "--config",
        type=Path,
        default=REPO / "config" / "paper.yaml",
        help="defense hyperparameters (`defenses`) and training settings (`training`)",
    )
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per defense")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--device", help="default: the GPU if there is one")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help=f"the device's peak for MFU; default {HOPPER_DENSE_BF16_TFLOPS:g} for bf16 on an H100/H200, else no MFU",
    )
    parser.add_argument("--mirror", type=Path, default=os.environ.get("ROBUSTLM_MIRROR"))
    parser.add_argument(
        "--csv", type=Path, help="also write the rows here (benchmarks/paper_grid_estimate.py reads them)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile every runner's model (compilation happens in the warmup steps)",
    )
    parser.add_argument(
        "--report-syncs",
        action="store_true",
        help="on GPU, warn (with the line) about each host sync in the timed steps",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny random model, seq-len 32, batch 4, 2 steps after 1 warmup (overrides those options)",
    )
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    outside_the_step = [name for name in args.defenses if name in DEFENSES and DEFENSES[name].makes_training_data()]
    if outside_the_step:
        parser.error(
            f"{', '.join(outside_the_step)} spend their cost making training data, outside the step timed here"
        )

    device = resolve_device(args.device)
    if args.report_syncs and device.type != "cuda":
        parser.error("--report-syncs needs a GPU: host syncs exist only there")
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    device_description = device_name(device)
    hopper = any(chip in device_description for chip in ("H100", "H200"))
    peak_tflops = args.peak_tflops or (HOPPER_DENSE_BF16_TFLOPS if hopper and dtype == "bf16" else None)
    config = load_config(args.config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    model_path = resolve_model(args.model, args.mirror)
    tokenizer = load_tokenizer(model_path)
    if args.random_init:
        model_config = BertConfig(vocab_size=tokenizer.vocab_size, num_labels=2, **RANDOM_INIT_SIZES[args.random_init])

        def new_model():
            return BertForSequenceClassification(model_config)
    else:

        def new_model():
            return load_classifier(model_path)

    def seeded_model():  # every runner starts from the same weights and RNG state
        set_seed(SEED)
        model = new_model().to(device).train()
        return torch.compile(model) if args.compile else model

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    rng = np.random.default_rng(SEED)
    batches = [
        (
            rng.integers(0, tokenizer.vocab_size, (args.batch_size, args.seq_len)).tolist(),
            rng.integers(0, 2, args.batch_size).tolist(),
        )
        for _ in range(args.warmup + args.steps)
    ]

    model = seeded_model()
    parameters = sum(p.numel() for p in model.parameters())
    runs = [
        (
            "reference",
            1,
            timed(
                plain_loop(model, config["training"], device, autocast), batches, args.warmup, device, args.report_syncs
            ),
        )
    ]
    del model
    for defense_name in args.defenses:
        settings = training_settings(config, defense_name)
        defense = build_defense(method_of(config, defense_name), defense_params(config, defense_name))
        model = seeded_model()
        with tempfile.TemporaryDirectory() as work_dir:
            defense.prepare(
                TrainingContext(
                    model=model,
                    tokenizer=tokenizer,
                    mirror=args.mirror,
                    train_labels=[label for _, labels in batches for label in labels],
                    max_length=args.seq_len,
                    device=device,
                    seed=SEED,
                    work_dir=Path(work_dir),
                    run_key=f"benchmark {defense_name}",
                )
            )
            step = project_step(defense, model, tokenizer, settings, len(batches), device, autocast)
            runs.append(
                (defense_name, 1 + defense.extra_passes, timed(step, batches, args.warmup, device, args.report_syncs))
            )
        del model, defense, step  # before the next runner's model is built: one model on the device at a time

    source = f"random {args.random_init}" if args.random_init else model_path
    examples, tokens = args.steps * args.batch_size, args.steps * args.batch_size * args.seq_len
    reference_seconds = runs[0][2]
    table = pd.DataFrame(
        [
            {
                "defense": label,
                "passes": passes,
                "examples_per_second": examples / seconds,
                "tokens_per_second": tokens / seconds,
                "ms_per_step": 1000 * seconds / args.steps,
                "slowdown": seconds / reference_seconds,
                "mfu": 6 * parameters * tokens * passes / seconds / (peak_tflops * 1e12)
                if peak_tflops
                else float("nan"),
            }
            for label, passes, seconds in runs
        ]
    )
    print(
        f"{device_description}, torch {torch.__version__}, {dtype}{', compiled' if args.compile else ''}, "
        f"seq-len {args.seq_len}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warmup"
    )
    print(
        f"model {source} ({parameters / 1e6:.1f}M parameters); reference: plain loop (forward with labels, "
        f"backward, AdamW){f'; MFU against {peak_tflops:g} TFLOPS' if peak_tflops else ''}"
    )
    print(
        f"{'defense':<12}{'passes':>7}{'examples/s':>12}{'tokens/s':>12}{'ms/step':>10}{'slowdown':>10}"
        + (f"{'MFU':>8}" if peak_tflops else "")
    )
    for row in table.itertuples():
        print(
            f"{row.defense:<12}{row.passes:>7}{row.examples_per_second:>12.1f}{row.tokens_per_second:>12.0f}"
            f"{row.ms_per_step:>10.1f}{row.slowdown:>9.2f}x" + (f"{row.mfu:>8.1%}" if peak_tflops else "")
        )
    if args.csv:
        table.assign(
            device=device_description,
            dtype=dtype,
            compiled=args.compile,
            model=source,
            parameters=parameters,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
        ).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
