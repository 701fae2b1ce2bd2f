"""Training throughput on MovieLens-100k with MiniLM: the LoRA step against the bare encoder, and the frozen step.

    python scripts/prepare_movielens.py && python scripts/benchmark_throughput.py [--steps 20] [--threads 2]

Measured in one process, one after the other, on the same batches (64 training windows, `max_live_items` live items):
  * bare encoder: forward + backward of the base MiniLM (all weights trainable, no LoRA) over the same live items'
    tokens, pooled; what any fine-tuning of the encoder on those items costs at least;
  * LoRA step: the whole textrec step (`TrainingObjective` forward, backward, optimizer step): live items through
    MiniLM + LoRA, the other items from the cache, the sequence tower over the histories, the full softmax;
  * frozen step: the same model with a frozen encoder (text vectors read from the cache only).
The ratio LoRA / bare is what the issue's target is about (at most 1.5x). Examples are training windows (each holds
up to 50 targets). Merges a row per measure (`textrec-results/1`) into docs/benchmarks/throughput.json and
regenerates throughput.md. On a shared machine run with --threads 1 and compare ratios only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textrec.evaluate.results import Result, ResultsFile, environment, record  # noqa: E402
from textrec.evaluate.tables import header, number, table  # noqa: E402

MEASURES = {  # method: (what, rate metric, its unit)
    "bare_encoder": ("bare MiniLM forward+backward, {live_items} items", "items_per_second", "items/s"),
    "lora_step": (
        "textrec LoRA step ({batch_windows} windows, {live_items} live items)",
        "examples_per_second",
        "windows/s",
    ),
    "frozen_step": ("textrec frozen step ({batch_windows} windows)", "examples_per_second", "windows/s"),
    "cached_lora_step": (
        "textrec LoRA step, top {top_layers} layers from cached lower states ({batch_windows} windows, {live_items} "
        "live items)",
        "examples_per_second",
        "windows/s",
    ),
}


def timed(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - started) / steps


def _step_seconds(data, texts, batch, cfg, live_items: int, steps: int) -> tuple[float, object]:
    """Seconds per textrec step (objective forward, backward, optimizer step) of the model `cfg` describes, and
    its item tokens. The first (untimed) steps build what is built once: the text cache, the lower-layer states."""
    from textrec.evaluate.ranking import compute_text_vectors
    from textrec.model.build import build_model, item_tokens
    from textrec.train.objectives import TextVectorCache, TrainingObjective

    model, tok = build_model(cfg, data.num_items)
    tokens = item_tokens(texts, tok, cfg, model)
    cache = TextVectorCache()
    cache.refresh(compute_text_vectors(model, tokens, 256, None, None), 0)
    objective = TrainingObjective(model, tokens, torch.ones(data.num_items))
    objective.configure(max_live_items=live_items, full_softmax_items=20000)
    objective.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)

    def step():
        loss = objective(**batch, cache=cache, seed=0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return timed(step, steps), tokens


def measure(args) -> dict:
    """Seconds per step of the LoRA and frozen textrec steps, of LoRA on the top layers from cached lower states
    (for each --cached-live count), and of the bare encoder; and the live items used."""
    from textrec.config import DataConfig, ModelConfig
    from textrec.data import load_data
    from textrec.data.features import all_targets
    from textrec.data.splits import leave_one_out
    from textrec.model.build import item_template
    from textrec.model.encoders import load_encoder_and_tokenizer, pool
    from textrec.train.loop import WindowExamples

    data_cfg = DataConfig(path="data/ml-100k", item_template="{movie_title} ({release_year}). Genres: {class}")
    data = load_data(data_cfg)
    split = leave_one_out(data)
    texts = item_template(data, data_cfg).render_all(data.items)
    batch = WindowExamples(all_targets(split.train), 50).batch(list(range(args.batch_size)), 0, "cpu")
    seconds, cached = {}, {}
    for mode in ("lora", "frozen"):
        cfg = ModelConfig(encoder="minilm", pooling="mean", train_mode=mode, id_embedding=True)
        seconds[f"{mode}_step"], tokens = _step_seconds(data, texts, batch, cfg, args.live_items, args.steps)
    for live in args.cached_live if args.top_layers else ():
        cfg = ModelConfig(encoder="minilm", pooling="mean", id_embedding=True, lora_top_layers=args.top_layers)
        cached[live], _ = _step_seconds(data, texts, batch, cfg, live, args.steps)
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

    seconds["bare_encoder"] = timed(bare, args.steps)
    candidates = len(torch.unique(batch["targets"][batch["targets"] >= 0]))
    return {**seconds, "live_items": len(targets), "cached": cached, "candidates": candidates}


def result_rows(measured: dict, windows: int, steps: int, env: dict) -> list[Result]:
    """A row per measure: seconds per step and its rate (and for LoRA its ratio to the bare encoder)."""
    bare, lora, frozen = (measured[m] for m in ("bare_encoder", "lora_step", "frozen_step"))
    metrics = {
        "bare_encoder": {"seconds_per_step": bare, "items_per_second": measured["live_items"] / bare},
        "lora_step": {"seconds_per_step": lora, "examples_per_second": windows / lora, "lora_over_bare": lora / bare},
        "frozen_step": {"seconds_per_step": frozen, "examples_per_second": windows / frozen},
    }
    extra = {"encoder": "minilm", "batch_windows": windows, "live_items": measured["live_items"]}
    rows = [Result("ml-100k", "throughput", m, v, steps=steps, extra=dict(extra), **env) for m, v in metrics.items()]
    for live, secs in measured["cached"].items():  # LoRA on the top layers, from the cached lower layers' states
        live_items = min(live, measured["candidates"])
        metrics = {"seconds_per_step": secs, "examples_per_second": windows / secs, "over_frozen": secs / frozen}
        more = {**extra, "live_items": live_items, "top_layers": measured["top_layers"]}
        slice_ = f"top{measured['top_layers']}-live{live_items}"
        rows.append(Result("ml-100k", "throughput", "cached_lora_step", metrics, slice=slice_, steps=steps,
                           extra=more, **env))  # fmt: skip
    return rows


def markdown(file: ResultsFile) -> str:
    rows = sorted((r for r in file.rows if r.method in MEASURES), key=lambda r: list(MEASURES).index(r.method))
    lines = [
        [what.format(**r.extra), number(r.metrics["seconds_per_step"], 3), f"{number(r.metrics[rate], 0)} {unit}"]
        for r in rows
        for what, rate, unit in [MEASURES[r.method]]
    ]
    text = header("Training throughput", file) + "\n\n"
    text += table(["measure", "seconds per step", "examples/s"], lines) + "\n"
    for r in (r for r in rows if r.method == "lora_step"):
        text += f"\nLoRA step / bare encoder forward+backward: **{r.metrics['lora_over_bare']:.2f}x**\n"
    for r in (r for r in rows if r.method == "cached_lora_step"):
        text += f"\nCached-layer LoRA step, {r.extra['live_items']} live items / frozen step: "
        text += f"**{r.metrics['over_frozen']:.2f}x**\n"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--live-items", type=int, default=64)
    parser.add_argument("--top-layers", type=int, default=0, help="also measure LoRA on the top k layers, cached")
    parser.add_argument("--cached-live", type=int, nargs="+", default=[256, 100000], help="live items, cached mode")
    parser.add_argument("--out", default="docs/benchmarks/throughput", help="results file (.json, .md)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    env = environment()
    measured = {**measure(args), "top_layers": args.top_layers}
    rows = result_rows(measured, args.batch_size, args.steps, env)
    out = Path(args.out).with_suffix(".json")
    record(out, rows, markdown)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
