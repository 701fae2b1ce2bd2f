"""Incremental LoRA under protocol E2: keep a recommender fresh on time-ordered slices, side by side with
frozen, fine-tune, replay, windowed and full retraining.

    python scripts/prepare_movielens.py
    accelerate launch recipes/incremental_lora.py --config recipes/configs/incremental_ml100k_minilm.yaml

The base model is trained once on the base period and shared by every strategy; each strategy then updates it
slice by slice, saving a versioned adapter per update (`<output_dir>/<strategy>/slice_000, slice_001, ...` with a
manifest). After every update the model is evaluated on every period's test events, giving the matrix R[t][j].
Writes `report.json`, `report.md` and `report.png` (NDCG@10 per slice and cumulative cost per strategy).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed

from textrec.build import build_model, item_template, item_tokens, load_recdata
from textrec.config import DataConfig, ModelConfig, config_to_dict, load_config
from textrec.evaluation import compute_item_vectors, compute_text_vectors, evaluate
from textrec.hub import atomic_write_text
from textrec.incremental import AdapterRegistry, UpdateSettings, fit, save_version
from textrec.stream import Reservoir, continual_metrics, make_stream

logger = logging.getLogger(__name__)
STRATEGIES = ("frozen", "finetune", "replay", "full_retrain", "window")


@dataclass
class IncrementalConfig:
    """The E2 stream, the strategies and how each update trains."""

    output_dir: str = field(default="outputs/incremental", metadata={"help": "reports and versioned adapters"})
    seed: int = field(default=42, metadata={"help": "seed for the held-out draw, sampling and initialisation"})
    base_fraction: float = field(default=0.5, metadata={"help": "share of the stream in the base period"})
    num_slices: int = field(default=5, metadata={"help": "T: slices after the base period"})
    test_fraction: float = field(default=0.1, metadata={"help": "held-out share of every period"})
    eval_cap: int = field(default=2000, metadata={"help": "evaluation events per period (seeded sample)"})
    strategies: list = field(default_factory=lambda: list(STRATEGIES), metadata={"help": f"any of {STRATEGIES}"})
    window: int = field(default=2, metadata={"help": "window strategy: the last W periods"})
    reservoir_size: int = field(default=4000, metadata={"help": "replay: past interactions kept (reservoir)"})
    base_epochs: int = field(default=12, metadata={"help": "epochs of base training (and of full_retrain)"})
    base_warmup_epochs: int = field(default=8, metadata={"help": "of those, epochs on frozen text vectors first"})
    update_epochs: int = field(default=2, metadata={"help": "epochs of each incremental update"})
    update_warmup_epochs: int = field(default=0, metadata={"help": "of those, on frozen text vectors first"})
    lora_epochs_on: str = field(
        default="all",
        metadata={"help": "targets of an update's LoRA epochs: all (slice + replay / window) | new (the slice only)"},
    )
    batch_size: int = field(default=64, metadata={"help": "windows per step"})
    lr: float = field(default=1e-3, metadata={"help": "heads and sequence tower"})
    encoder_lr: float = field(default=2e-4, metadata={"help": "LoRA weights"})
    update_lr: float = field(default=5e-4, metadata={"help": "heads and tower during updates"})
    max_live_items: int = field(default=64, metadata={"help": "items encoded live per step"})
    cache_refresh_steps: int = field(default=40, metadata={"help": "cached item text vectors refresh period"})
    l2sp: float = field(default=0.0, metadata={"help": "L2-SP penalty towards the previous adapter (0: off)"})

    def __post_init__(self):
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"incremental.strategies: unknown strategy {unknown[0]!r} (known: {STRATEGIES})")
        if self.base_warmup_epochs > self.base_epochs:
            raise ValueError("incremental.base_warmup_epochs: must not exceed base_epochs")
        if self.lora_epochs_on not in ("all", "new"):
            raise ValueError(f"incremental.lora_epochs_on: expected all or new, got {self.lora_epochs_on!r}")
        if self.update_warmup_epochs > self.update_epochs:
            raise ValueError("incremental.update_warmup_epochs: must not exceed update_epochs")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "incremental": IncrementalConfig}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file under recipes/configs/")
    args, overrides = parser.parse_known_args()
    return load_config(SECTIONS, args.config, overrides)


def main():
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    cfg = parse_args()
    data_cfg, model_cfg, inc = cfg["data"], cfg["model"], cfg["incremental"]
    out = Path(inc.output_dir)
    accelerator = Accelerator(
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
    )
    set_seed(inc.seed)

    # 1. Data: the E2 stream (base period + T slices, 10% of each held out)
    with accelerator.main_process_first():
        data = load_recdata(data_cfg)
    stream = make_stream(data, inc.base_fraction, inc.num_slices, inc.test_fraction, inc.seed)
    periods = range(len(stream.periods))
    events = [stream.eval_events(p, inc.eval_cap, inc.seed) for p in periods]
    template = item_template(data, data_cfg)
    texts = template.render_all(data.items)
    logger.info(
        f"stream: {[p.size for p in stream.periods]} interactions per period; "
        f"{[len(e) for e in events]} evaluation events"
    )

    # 2. Model: the initial state every from-scratch run starts from (same seed, same weights)
    initial, tokenizer = build_model(model_cfg, data.num_items)
    tokens = item_tokens(texts, tokenizer, model_cfg, initial) if initial.has_text else None
    initial_state = copy.deepcopy(initial.state_dict())

    def fresh_model():
        model = copy.deepcopy(initial)
        model.load_state_dict(initial_state)
        return model

    def settings(epochs, lr):
        return UpdateSettings(
            epochs=epochs,
            batch_size=inc.batch_size,
            lr=lr,
            encoder_lr=inc.encoder_lr,
            max_live_items=inc.max_live_items,
            cache_refresh_steps=inc.cache_refresh_steps,
            l2sp=inc.l2sp,
            seed=inc.seed,
        )

    def train(model, positions, targets, epochs, lr, warmup=0, anchor=None, state_dir=None):
        """Train on `targets` (positions in the stream) with `positions` as the users' history context."""
        sequences = stream.user_sequences(positions, targets)
        freq = torch.as_tensor(np.bincount(stream.items[targets], minlength=data.num_items), dtype=torch.float32)
        return fit(
            model,
            tokens,
            sequences,
            settings(epochs, lr),
            freq + 1,
            anchor=anchor,
            state_dir=state_dir,
            accelerator=accelerator if accelerator.num_processes > 1 else None,
            warmup_epochs=warmup,
        )

    def scores(model):
        """NDCG@10 on every period's test events (history masked), item vectors computed once."""
        text = compute_text_vectors(model, tokens, 256, accelerator, None) if model.has_text else None
        vectors = compute_item_vectors(model, text, data.num_items)
        return [
            evaluate(model, events[p], vectors, mask_history=True, accelerator=accelerator)["ndcg@10"] for p in periods
        ]

    def save(model, registry, parent, strategy, t, cost, row):
        if not accelerator.is_main_process:
            return None
        period = stream.periods[t]
        return save_version(
            registry,
            model,
            model_cfg,
            data.item_ids,
            tokenizer=tokenizer,
            item_template=template.template,
            parent=parent,
            strategy=strategy,
            data_range=(period.start_time, period.end_time),
            cost=cost,
            metrics={f"ndcg@10_period_{j}": v for j, v in enumerate(row)},
        )

    # 3. Base: trained once on the base period's training events, shared by every strategy
    base_positions = stream.train_positions(0)
    base_model = fresh_model()
    base_cost = train(
        base_model,
        base_positions,
        base_positions,
        inc.base_epochs,
        inc.lr,
        inc.base_warmup_epochs,
        state_dir=out / ".base.partial",
    )
    base_row = scores(base_model)
    logger.info(f"base: NDCG@10 per period {np.round(base_row, 4).tolist()} ({base_cost['seconds']:.0f}s)")

    report = {
        "config": config_to_dict(cfg),
        "periods": [p.size for p in stream.periods],
        "eval_events": [len(e) for e in events],
        "base_cost": base_cost,
        "strategies": {},
    }
    for strategy in inc.strategies:
        registry = AdapterRegistry(out / strategy)
        if accelerator.is_main_process and registry.manifest_path.exists():
            shutil.rmtree(registry.root)  # a fresh side-by-side run; resumable state lives in .partial folders
        accelerator.wait_for_everyone()
        parent = save(base_model, registry, None, "base", 0, base_cost, base_row)
        model, matrix, costs = copy.deepcopy(base_model), [base_row], []
        reservoir = Reservoir(inc.reservoir_size, inc.seed)
        reservoir.add(base_positions)
        for t in range(1, len(stream.periods)):
            started = time.perf_counter()
            seen = stream.train_positions(t)  # everything up to and including slice t: history context
            new = stream.periods[t].train
            cost = {"seconds": 0.0, "steps": 0, "examples": 0}
            if strategy in ("finetune", "replay", "window"):  # continue the previous adapter
                targets = {
                    "finetune": new,
                    "replay": np.union1d(new, reservoir.sample()),
                    "window": stream.train_positions(t, start=max(0, t - inc.window + 1)),
                }[strategy]
                anchor = _anchor(model) if inc.l2sp else None
                partial = registry.root / f".{t}.partial"
                if inc.lora_epochs_on == "new" and 0 < inc.update_warmup_epochs < inc.update_epochs:
                    # the cheap epochs learn from slice + replay / window; the LoRA epochs from the slice only
                    cheap = train(
                        model,
                        seen,
                        targets,
                        inc.update_warmup_epochs,
                        inc.update_lr,
                        inc.update_warmup_epochs,
                        anchor=anchor,
                        state_dir=partial / "cheap",
                    )
                    lora = train(
                        model,
                        seen,
                        new,
                        inc.update_epochs - inc.update_warmup_epochs,
                        inc.update_lr,
                        0,
                        anchor=anchor,
                        state_dir=partial / "lora",
                    )
                    cost = {k: cheap[k] + lora[k] for k in ("seconds", "steps", "examples", "epochs_done")}
                else:
                    cost = train(
                        model,
                        seen,
                        targets,
                        inc.update_epochs,
                        inc.update_lr,
                        inc.update_warmup_epochs,
                        anchor=anchor,
                        state_dir=partial,
                    )
                reservoir.add(new)
            elif strategy == "full_retrain":
                model = fresh_model()  # same starting point and stopping rule as the base run
                cost = train(
                    model,
                    seen,
                    seen,
                    inc.base_epochs,
                    inc.lr,
                    inc.base_warmup_epochs,
                    state_dir=registry.root / f".{t}.partial",
                )
            row = scores(model) if strategy != "frozen" else base_row
            matrix.append(row)
            cost["wall_seconds"] = time.perf_counter() - started if strategy != "frozen" else 0.0
            if strategy != "frozen":
                parent = save(model, registry, parent, strategy, t, cost, row)
                cost["adapter_bytes"] = _adapter_bytes(registry, parent) if parent else None
                if accelerator.is_main_process:
                    shutil.rmtree(registry.root / f".{t}.partial", ignore_errors=True)
            costs.append(cost)
            logger.info(
                f"{strategy} slice {t}: NDCG@10 on slice {t} before {matrix[t - 1][t]:.4f}, after "
                f"{row[t]:.4f} ({cost['seconds']:.0f}s)"
            )
        summary = continual_metrics(matrix)
        report["strategies"][strategy] = {
            "matrix": matrix,
            **summary,
            "costs": costs,
            "cumulative_seconds": float(sum(c["seconds"] for c in costs)),
            "optimizer_steps": int(sum(c["steps"] for c in costs)),
            "examples_seen": int(sum(c["examples"] for c in costs)),
            "trainable_params": model.trainable_parameters(),
        }

    # 4. Report: JSON, markdown table, plot
    report["rows"] = summary_rows(report)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "report.json", json.dumps(report, indent=2))
        table = markdown(report)
        atomic_write_text(out / "report.md", table)
        plot(report, out / "report.png")
        print(table)
        print(f"report: {out / 'report.json'}  plot: {out / 'report.png'}  adapters: {out}/<strategy>/")
        shutil.rmtree(out / ".base.partial", ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the process group before exit


def _anchor(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _adapter_bytes(registry, version):
    return registry.entry(version)["cost"]["adapter_bytes"]


def summary_rows(report: dict) -> list[dict]:
    """One row per strategy with the headline numbers (what docs/benchmarks/incremental_ml100k.json holds)."""
    return [
        {
            "strategy": name,
            "mean_prequential_ndcg@10": s["mean_prequential"],
            "mean_current_ndcg@10": float(np.mean(s["current"][1:])),
            "cumulative_seconds": s["cumulative_seconds"],
            "mean_forgetting": s["mean_forgetting"],
            "mean_relative_forgetting": s["mean_relative_forgetting"],
            "bwt": s["bwt"],
            "optimizer_steps": s["optimizer_steps"],
            "examples_seen": s["examples_seen"],
            "trainable_params": s["trainable_params"],
            "adapter_bytes": [c.get("adapter_bytes") for c in s["costs"]],
        }
        for name, s in report["strategies"].items()
    ]


def markdown(report: dict) -> str:
    strategies = report["strategies"]
    full = strategies.get("full_retrain")
    lines = [
        "| strategy | mean prequential NDCG@10 | mean current NDCG@10 | mean forgetting | BWT | cumulative s "
        "| steps | examples | x full_retrain prequential | x full_retrain time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in strategies.items():
        rel_q = s["mean_prequential"] / full["mean_prequential"] if full else float("nan")
        rel_t = s["cumulative_seconds"] / full["cumulative_seconds"] if full and full["cumulative_seconds"] else 0
        lines.append(
            f"| {name} | {s['mean_prequential']:.4f} | {np.mean(s['current'][1:]):.4f} | "
            f"{s['mean_forgetting']:.4f} | {s['bwt']:+.4f} | {s['cumulative_seconds']:.0f} | "
            f"{s['optimizer_steps']} | {s['examples_seen']} | {rel_q:.3f} | {rel_t:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, s in report["strategies"].items():
        slices = range(1, len(s["matrix"]))
        ax1.plot(list(slices), s["prequential"], marker="o", label=name)
        ax2.plot(list(slices), np.cumsum([c["seconds"] for c in s["costs"]]), marker="o", label=name)
    ax1.set(xlabel="slice t", ylabel="NDCG@10 on slice t before training on it", title="prequential NDCG@10")
    ax2.set(xlabel="slice t", ylabel="seconds", title="cumulative training time")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
