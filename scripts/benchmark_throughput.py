"""Training throughput on MovieLens-100k with MiniLM: the LoRA step against the bare encoder, and the frozen step.

    python scripts/prepare_movielens.py && python scripts/benchmark_throughput.py [--steps 20] [--threads 2]

Measured in one process, one after the other, on the same batches (64 training windows, `max_live_items` live items):
  * bare encoder: forward + backward of the base MiniLM (all weights trainable, no LoRA) over the same live items'
    tokens, pooled; what any fine-tuning of the encoder on those items costs at least;
  * LoRA step: the whole textrec step (`TrainingObjective` forward, backward, optimizer step): live items through
    MiniLM + LoRA, the other items from the cache, the sequence tower over the histories, the full softmax;
  * frozen step: the same model with a frozen encoder (text vectors read from the cache only).
The ratio LoRA / bare is what the issue's target is about (at most 1.5x). Examples are training windows (each holds
up to 50 targets). Writes docs/benchmarks/throughput.{json,md}. On a shared machine run with --threads 1 and
compare ratios only.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textrec.config import DataConfig, ModelConfig  # noqa: E402
from textrec.data import load_data  # noqa: E402
from textrec.data.features import all_targets  # noqa: E402
from textrec.data.splits import leave_one_out  # noqa: E402
from textrec.evaluate.ranking import compute_text_vectors  # noqa: E402
from textrec.model.build import build_model, item_template, item_tokens  # noqa: E402
from textrec.model.encoders import load_encoder_and_tokenizer, pool  # noqa: E402
from textrec.train.loop import WindowExamples  # noqa: E402
from textrec.train.objectives import TextVectorCache, TrainingObjective  # noqa: E402


def timed(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--live-items", type=int, default=64)
    parser.add_argument("--out", default="docs/benchmarks/throughput")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data_cfg = DataConfig(path="data/ml-100k", item_template="{movie_title} ({release_year}). Genres: {class}")
    data = load_data(data_cfg)
    split = leave_one_out(data)
    texts = item_template(data, data_cfg).render_all(data.items)
    examples = WindowExamples(all_targets(split.train), 50)
    batch = examples.batch(list(range(args.batch_size)), 0, "cpu")
    freq = torch.ones(data.num_items)
    results = {}
    for mode in ("lora", "frozen"):
        cfg = ModelConfig(encoder="minilm", pooling="mean", train_mode=mode, id_embedding=True)
        model, tok = build_model(cfg, data.num_items)
        tokens = item_tokens(texts, tok, cfg, model)
        cache = TextVectorCache()
        cache.refresh(compute_text_vectors(model, tokens, 256, None, None), 0)
        objective = TrainingObjective(model, tokens, freq, max_live_items=args.live_items, full_softmax_items=20000)
        objective.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)

        def step(objective=objective, optimizer=optimizer, cache=cache):
            loss = objective(**batch, cache=cache, seed=0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        results[f"{mode}_step_seconds"] = timed(step, args.steps)
    # the bare encoder on the same live items: the batch's first `live_items` distinct targets' tokens
    base, _ = load_encoder_and_tokenizer("minilm")
    base.train()
    targets = torch.unique(batch["targets"][batch["targets"] >= 0])[: args.live_items]
    ids, mask = tokens.batch(targets.tolist())
    optimizer = torch.optim.AdamW(base.parameters(), 1e-5)

    def bare():
        pooled = pool(base(input_ids=ids, attention_mask=mask).last_hidden_state, mask, "mean")
        pooled.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()

    results["bare_encoder_seconds"] = timed(bare, args.steps)
    windows = args.batch_size
    report = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU only",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python scripts/benchmark_throughput.py " + " ".join(sys.argv[1:]),
        "batch_windows": windows,
        "live_items": len(targets),
        **results,
        "lora_examples_per_second": windows / results["lora_step_seconds"],
        "frozen_examples_per_second": windows / results["frozen_step_seconds"],
        "bare_encoder_items_per_second": len(targets) / results["bare_encoder_seconds"],
        "lora_over_bare": results["lora_step_seconds"] / results["bare_encoder_seconds"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(report, indent=2) + "\n")
    md = (
        f"{report['machine']}, {report['date']}; `{report['command']}`\n\n"
        "| measure | seconds per step | examples/s |\n|---|---|---|\n"
        f"| bare MiniLM forward+backward, {len(targets)} items | {results['bare_encoder_seconds']:.3f} | "
        f"{report['bare_encoder_items_per_second']:.0f} items/s |\n"
        f"| textrec LoRA step ({windows} windows, {len(targets)} live items) | {results['lora_step_seconds']:.3f} | "
        f"{report['lora_examples_per_second']:.0f} windows/s |\n"
        f"| textrec frozen step ({windows} windows) | {results['frozen_step_seconds']:.3f} | "
        f"{report['frozen_examples_per_second']:.0f} windows/s |\n\n"
        f"LoRA step / bare encoder forward+backward: **{report['lora_over_bare']:.2f}x**\n"
    )
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
