"""Train a text-aware two-tower recommender and evaluate it under protocol E1 (leave-one-out, full ranking).

    python scripts/prepare_movielens.py                      # once: ml-100k from the recbole wheel
    accelerate launch recipes/train.py --config recipes/configs/ml100k_minilm.yaml
    accelerate launch recipes/train.py --config recipes/configs/ml100k_minilm.yaml training.epochs=3

Any config field can be overridden as `section.field=value` (or `--section.field value`). The run writes
`<output_dir>/model` (adapters + heads + config + model card, no frozen base weights), `metrics.json`,
`curves.png`, and checkpoints under `<output_dir>/checkpoints` (it resumes from the latest one when restarted).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from textrec.build import build_model, history_text, item_template, item_tokens, load_recdata
from textrec.config import DataConfig, ModelConfig, config_to_dict, load_config
from textrec.evaluation import (
    compute_item_vectors,
    compute_text_vectors,
    evaluate,
    evaluate_scores,
    popularity_scores,
)
from textrec.features import epoch_batches, sequence_windows
from textrec.hub import atomic_write_text, framework_versions, load_weights_into, push_or_explain, save_pretrained
from textrec.splits import leave_one_out
from textrec.training import TextVectorCache, TrainingObjective, collate_windows, encoder_is_trainable

logger = get_logger(__name__)


@dataclass
class TrainingConfig:
    """The optimisation loop, evaluation and checkpointing."""

    output_dir: str = field(default="outputs/train", metadata={"help": "where the model, metrics and checkpoints go"})
    seed: int = field(default=42, metadata={"help": "seed for data order, initialisation and sampling"})
    epochs: int = field(default=20, metadata={"help": "maximum epochs (early stopping may end sooner)"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimizer steps (-1: no limit)"})
    max_train_minutes: float = field(default=0.0, metadata={"help": "training time budget in minutes (0: none)"})
    batch_size: int = field(default=64, metadata={"help": "sequences (or user examples) per process per step"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of heads, id embeddings, sequence tower"})
    encoder_lr: float = field(default=2e-4, metadata={"help": "learning rate of the encoder (LoRA) weights"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (L2) of all trained weights"})
    scheduler: str = field(default="constant", metadata={"help": "constant | linear | cosine | plateau"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: off)"})
    mixed_precision: str = field(default="no", metadata={"help": "no | fp16 | bf16"})
    loss: str = field(default="softmax", metadata={"help": "softmax (in-batch, logQ) | bce | mse (ratings)"})
    logq_correction: bool = field(default=True, metadata={"help": "subtract log sampling probability (Yi 2019)"})
    num_negatives: int = field(
        default=0, metadata={"help": "extra uniformly sampled negatives per batch (bce: per positive)"}
    )
    max_live_items: int = field(
        default=64, metadata={"help": "candidate items encoded live (with gradient) per step; the rest read the cache"}
    )
    cache_refresh_steps: int = field(
        default=50,
        metadata={"help": "recompute cached item text vectors every N optimizer steps (trainable encoder only)"},
    )
    encoder_warmup_epochs: int = field(
        default=0,
        metadata={
            "help": "first epochs train heads/ids/sequence tower on frozen text vectors (fast); then the encoder "
            "(LoRA) joins (linear probing then fine-tuning)"
        },
    )
    targets_per_user: int = field(default=4, metadata={"help": "text user tower: training targets per user/epoch"})
    eval_batch_size: int = field(default=256, metadata={"help": "events per evaluation batch"})
    patience: int = field(default=3, metadata={"help": "early stopping: epochs without validation NDCG@10 gain"})
    checkpoint_every: int = field(
        default=200, metadata={"help": "save a resumable checkpoint every N steps (0: only at epoch ends)"}
    )
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept on disk"})
    log_with: str | None = field(default=None, metadata={"help": "accelerate tracker, e.g. tensorboard"})

    def __post_init__(self):
        if self.scheduler not in ("constant", "linear", "cosine", "plateau"):
            raise ValueError(
                f"training.scheduler: expected constant, linear, cosine or plateau, got {self.scheduler!r}"
            )
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"training.mixed_precision: expected no, fp16 or bf16, got {self.mixed_precision!r}")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name}: must be >= 1, got {getattr(self, name)}")


@dataclass
class HubConfig:
    """Opt-in upload of the finished model folder to the Hugging Face Hub."""

    push_to_hub: bool = field(default=False, metadata={"help": "push <output_dir>/model when the run ends"})
    repo_id: str | None = field(default=None, metadata={"help": "e.g. you/textrec-ml100k"})
    private: bool = field(default=False, metadata={"help": "create the repo as private"})

    def __post_init__(self):
        if self.push_to_hub and not self.repo_id:
            raise ValueError("hub.repo_id: required when hub.push_to_hub is true")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig, "hub": HubConfig}


class TrainState:
    """Loop position and early-stopping state, saved with every checkpoint."""

    def __init__(self):
        self.epoch, self.step_in_epoch, self.global_step, self.micro_step = 0, 0, 0, 0
        self.best, self.bad_epochs, self.done = -1.0, 0, False
        self.curve: list[dict] = []
        self.train_seconds, self.examples = 0.0, 0

    def state_dict(self):
        return {"json": json.dumps(self.__dict__)}

    def load_state_dict(self, state):
        self.__dict__.update(json.loads(state["json"]))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file under recipes/configs/")
    args, overrides = parser.parse_known_args()
    return load_config(SECTIONS, args.config, overrides)


def latest_checkpoint(output_dir: Path) -> Path | None:
    ckpts = sorted((output_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return ckpts[-1] if ckpts else None


def save_checkpoint(accelerator, output_dir: Path, step: int, keep: int):
    """Atomic: every process writes into a temporary folder that the main process renames when all are done."""
    root = output_dir / "checkpoints"
    tmp, final = root / f".tmp_step_{step}", root / f"step_{step}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if (output_dir / "best_model").exists():  # the best-so-far model is part of the resumable state
            shutil.copytree(output_dir / "best_model", tmp / "best_model")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in sorted(root.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def main():
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file is noise
    cfg = parse_args()
    data_cfg, model_cfg, train_cfg = cfg["data"], cfg["model"], cfg["training"]
    output_dir = Path(train_cfg.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=train_cfg.gradient_accumulation_steps,
        mixed_precision=train_cfg.mixed_precision,
        log_with=train_cfg.log_with,
        project_dir=str(output_dir),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # Several processes without a GPU: accelerate needs cpu=True to form a gloo group (MULTI_CPU).
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
    )
    set_seed(train_cfg.seed)

    # 1. Data: load, split (E1), render item text
    with accelerator.main_process_first():
        data = load_recdata(data_cfg)
    split = leave_one_out(data)
    template = item_template(data, data_cfg)
    texts = template.render_all(data.items)
    logger.info(
        f"{data.source}: {len(data.interactions)} interactions, {data.num_items} items, "
        f"{len(split.train)} users, {len(split.test)} test events",
        main_process_only=True,
    )

    # 2. Model
    model, tokenizer = build_model(model_cfg, data.num_items)
    model.mark_trained_items(np.unique(np.concatenate(split.train)))  # untrained id rows stay out of scoring
    tokens = item_tokens(texts, tokenizer, model_cfg, model) if model.has_text else None
    hist_text = history_text(texts, tokenizer, model_cfg)
    freq = torch.as_tensor(popularity_scores(split.train, data.num_items), dtype=torch.float32) + 1.0
    objective = TrainingObjective(
        model,
        tokens,
        freq,
        train_cfg.loss,
        train_cfg.logq_correction,
        train_cfg.num_negatives,
        train_cfg.max_live_items,
        hist_text,
    )

    # 3. Training examples: windows of each user's training sequence (sequence tower) or (user, position) pairs
    if model.user_tower == "sequence":
        windows = sequence_windows(split.train, model_cfg.max_history)
        rating_windows = (
            sequence_windows(split.train_ratings, model_cfg.max_history) if train_cfg.loss == "mse" else None
        )
        num_examples = len(windows)
    else:
        num_examples = sum(1 for s in split.train if len(s) >= 2) * train_cfg.targets_per_user
    steps_per_epoch = math.ceil(num_examples / (train_cfg.batch_size * accelerator.num_processes))
    total_steps = steps_per_epoch * train_cfg.epochs // train_cfg.gradient_accumulation_steps
    if train_cfg.max_steps > 0:
        total_steps = min(total_steps, train_cfg.max_steps)

    # 4. Optimizer and schedule: a separate learning rate for the encoder
    encoder_params = [p for n, p in model.named_parameters() if p.requires_grad and "_encoder." in n]
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and "_encoder." not in n]
    groups = [{"params": head_params, "lr": train_cfg.lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": train_cfg.encoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=train_cfg.weight_decay)
    if train_cfg.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    else:
        from transformers import get_scheduler

        scheduler = get_scheduler(
            train_cfg.scheduler if train_cfg.scheduler != "constant" else "constant_with_warmup",
            optimizer,
            num_warmup_steps=train_cfg.warmup_steps,
            num_training_steps=max(1, total_steps),
        )

    # 5. Accelerate
    objective, optimizer = accelerator.prepare(objective, optimizer)
    if train_cfg.scheduler != "plateau":
        scheduler = accelerator.prepare(scheduler)
    cache, state = TextVectorCache(), TrainState()
    accelerator.register_for_checkpointing(cache, state)
    if train_cfg.scheduler == "plateau":
        accelerator.register_for_checkpointing(scheduler)
    resume_from = latest_checkpoint(output_dir)
    run_config = {k: v for k, v in config_to_dict(cfg).items() if k in ("data", "model")}
    if resume_from is not None and (output_dir / "run_config.json").is_file():
        saved = json.loads((output_dir / "run_config.json").read_text())
        if saved != json.loads(json.dumps(run_config)):
            raise ValueError(
                f"{output_dir}: its checkpoints were made with other data/model settings; resume with the same "
                "config, or choose a new training.output_dir"
            )
    if accelerator.is_main_process:
        atomic_write_text(output_dir / "run_config.json", json.dumps(run_config, indent=2))
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        if accelerator.is_main_process and (resume_from / "best_model").exists():
            shutil.rmtree(output_dir / "best_model", ignore_errors=True)
            shutil.copytree(resume_from / "best_model", output_dir / "best_model")
        accelerator.wait_for_everyone()
        logger.info(
            f"resumed from {resume_from} (epoch {state.epoch}, step {state.global_step})", main_process_only=True
        )
    if train_cfg.log_with:
        accelerator.init_trackers("textrec", config=_flat(config_to_dict(cfg)))
    trainable = model.trainable_parameters()
    logger.info(f"trainable parameters: {trainable:,}", main_process_only=True)

    def refresh_cache():
        if model.has_text:
            cache.refresh(
                compute_text_vectors(model, tokens, train_cfg.eval_batch_size, accelerator, None), state.global_step
            )

    def encoder_learning() -> bool:
        return encoder_is_trainable(model) and state.epoch >= train_cfg.encoder_warmup_epochs

    def item_vectors_now():
        """Item vectors computed once per evaluation (a frozen encoder's text vectors are the cache itself)."""
        text = None
        if model.has_text and encoder_learning():
            text = compute_text_vectors(model, tokens, train_cfg.eval_batch_size, accelerator, "encoding items")
        elif model.has_text:
            text = cache.vectors if cache.vectors is not None else refresh_cache() or cache.vectors
        return compute_item_vectors(model, text, data.num_items)

    # 6. Train
    best_dir = output_dir / "best_model"
    while state.epoch < train_cfg.epochs and not state.done:
        epoch_started, seconds_before = time.perf_counter(), state.train_seconds  # evaluation is not counted
        batches = epoch_batches(
            num_examples,
            train_cfg.batch_size,
            train_cfg.seed,
            state.epoch,
            accelerator.process_index,
            accelerator.num_processes,
            multiple=train_cfg.gradient_accumulation_steps,
        )
        if model.user_tower == "text":
            examples = _text_examples(split.train, train_cfg.targets_per_user, train_cfg.seed, state.epoch)
        objective.train()
        # While the encoder is frozen (or warming up) no item is encoded live and the cache is never stale.
        unwrapped = accelerator.unwrap_model(objective)
        unwrapped.max_live_items = train_cfg.max_live_items if encoder_learning() else 0
        cache_refresh = train_cfg.cache_refresh_steps if encoder_learning() else 0
        bar = tqdm(
            total=len(batches),
            initial=state.step_in_epoch,
            desc=f"epoch {state.epoch}",
            disable=not accelerator.is_local_main_process,
        )
        for batch in batches[state.step_in_epoch :]:
            if cache.due(state.global_step, cache_refresh):
                refresh_cache()
            with accelerator.accumulate(objective):
                if model.user_tower == "sequence":
                    inputs, targets, ratings = collate_windows(
                        [windows[i] for i in batch],
                        model_cfg.max_history,
                        [rating_windows[i] for i in batch] if rating_windows else None,
                        accelerator.device,
                    )
                    loss = objective(
                        inputs, targets, ratings, cache=cache, seed=train_cfg.seed * 1_000_003 + state.micro_step
                    )
                    state.examples += int((targets >= 0).sum()) * accelerator.num_processes
                else:
                    chosen = [examples[i] for i in batch]
                    targets = torch.as_tensor([[t] for _, t in chosen], device=accelerator.device)
                    loss = objective(
                        None,
                        targets,
                        None,
                        cache=cache,
                        seed=train_cfg.seed * 1_000_003 + state.micro_step,
                        histories=[h for h, _ in chosen],
                    )
                    state.examples += len(chosen) * accelerator.num_processes
                accelerator.backward(loss)
                if accelerator.sync_gradients and train_cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(objective.parameters(), train_cfg.max_grad_norm)
                optimizer.step()
                if train_cfg.scheduler != "plateau":
                    scheduler.step()
                optimizer.zero_grad()
            state.micro_step += 1
            state.step_in_epoch += 1
            bar.update(1)
            if accelerator.sync_gradients:
                state.global_step += 1
                bar.set_postfix(loss=f"{loss.item():.4f}")
                if train_cfg.log_with:
                    accelerator.log(
                        {"train/loss": loss.item(), "train/lr": optimizer.param_groups[0]["lr"]},
                        step=state.global_step,
                    )
                state.train_seconds = seconds_before + time.perf_counter() - epoch_started
                out_of_budget = (0 < train_cfg.max_steps <= state.global_step) or (
                    train_cfg.max_train_minutes > 0 and state.train_seconds > 60 * train_cfg.max_train_minutes
                )
                if out_of_budget:
                    state.done = True
                    break
                if train_cfg.checkpoint_every and state.global_step % train_cfg.checkpoint_every == 0:
                    save_checkpoint(accelerator, output_dir, state.global_step, train_cfg.keep_checkpoints)
        bar.close()

        # 7. Validate at the end of each epoch (or when the budget ends); early stopping on NDCG@10
        valid = evaluate(
            model,
            split.valid,
            item_vectors_now(),
            mask_history=True,
            batch_size=train_cfg.eval_batch_size,
            history_text=hist_text,
            accelerator=accelerator,
        )
        epoch_seconds = state.train_seconds / (state.epoch + (state.step_in_epoch / max(1, len(batches))))
        state.curve.append(
            {
                "epoch": state.epoch,
                "step": state.global_step,
                "loss": float(loss.item()),
                "valid_ndcg@10": valid["ndcg@10"],
                "train_seconds": state.train_seconds,
            }
        )
        logger.info(
            f"epoch {state.epoch}: valid NDCG@10 {valid['ndcg@10']:.4f} Recall@10 {valid['recall@10']:.4f} "
            f"({state.train_seconds:.0f}s, {state.examples / max(state.train_seconds, 1e-9):.0f} ex/s)",
            main_process_only=True,
        )
        if train_cfg.log_with:
            accelerator.log({f"valid/{k}": v for k, v in valid.items()}, step=state.global_step)
        if train_cfg.scheduler == "plateau":
            scheduler.step(valid["ndcg@10"])
        if valid["ndcg@10"] > state.best:
            state.best, state.bad_epochs = valid["ndcg@10"], 0
            if accelerator.is_main_process:
                save_pretrained(
                    accelerator.unwrap_model(objective).model,
                    best_dir,
                    model_cfg,
                    data.item_ids,
                    tokenizer=tokenizer,
                    item_template=template.template,
                )
        else:
            state.bad_epochs += 1
            state.done = state.done or state.bad_epochs >= train_cfg.patience
        state.epoch += 1
        state.step_in_epoch = 0
        save_checkpoint(accelerator, output_dir, state.global_step, train_cfg.keep_checkpoints)
    accelerator.wait_for_everyone()

    # 8. Test: the best validation model, read once, both mask variants; popularity for reference
    load_weights_into(model, best_dir)
    vectors = item_vectors_now()
    results = {}
    for mask in (True, False):
        results[f"test_mask={mask}"] = evaluate(
            model,
            split.test,
            vectors,
            mask_history=mask,
            batch_size=train_cfg.eval_batch_size,
            history_text=hist_text,
            accelerator=accelerator,
            with_ratings=train_cfg.loss == "mse",
        )
        results[f"popularity_mask={mask}"] = evaluate_scores(
            popularity_scores(split.train, data.num_items), split.test, mask_history=mask
        )
    epochs_run = state.epoch if state.step_in_epoch == 0 else state.epoch + 1
    summary = {
        "protocol": "E1 leave-one-out, full ranking, pessimistic ties",
        "best_valid_ndcg@10": state.best,
        "epochs": epochs_run,
        "optimizer_steps": state.global_step,
        "train_seconds": state.train_seconds,
        "epoch_seconds": epoch_seconds,
        "examples_per_second": state.examples / max(state.train_seconds, 1e-9),
        "trainable_params": trainable,
        "peak_memory_mb": _peak_memory_mb(),
        "num_processes": accelerator.num_processes,
        "results": results,
        "curve": state.curve,
        "config": config_to_dict(cfg),
    }

    # 9. Save: the model folder, metrics, curves, summary table
    if accelerator.is_main_process:
        metrics = {f"test_{k}": v for k, v in results["test_mask=True"].items()}
        save_pretrained(
            model,
            output_dir / "model",
            model_cfg,
            data.item_ids,
            tokenizer=tokenizer,
            item_template=template.template,
            metrics=metrics,
            extra_config={
                "protocol": summary["protocol"] + ", history masked",
                "dataset": data_cfg.name or Path(data_cfg.path).name,
                "framework_versions": framework_versions(),
            },
        )
        atomic_write_text(output_dir / "metrics.json", json.dumps(summary, indent=2))
        _plot_curve(state.curve, output_dir / "curves.png")
        print(_summary_table(summary))
        print(f"model: {output_dir / 'model'}  metrics: {output_dir / 'metrics.json'}")

    # 10. Push (opt-in); a failed push logs how to push by hand and keeps the finished run
    if cfg["hub"].push_to_hub and accelerator.is_main_process:
        url = push_or_explain(output_dir / "model", cfg["hub"].repo_id, private=cfg["hub"].private)
        if url:
            print(f"pushed to {url}")
    accelerator.end_training()


def _text_examples(train, per_user: int, seed: int, epoch: int) -> list[tuple[list[int], int]]:
    """(history, target) pairs for the text user tower: `per_user` random positions per user and epoch."""
    rng = np.random.default_rng([seed, epoch, 7])
    out = []
    for seq in train:
        if len(seq) < 2:
            continue
        for t in rng.integers(1, len(seq), size=per_user):
            out.append((seq[:t].tolist(), int(seq[t])))
    return out


def _peak_memory_mb() -> float:
    """Peak resident memory of this process (and peak CUDA memory when on a GPU), in MiB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        peak = max(peak, torch.cuda.max_memory_allocated() / 2**20)
    return round(peak, 1)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)):
            out[f"{prefix}{k}"] = v
    return out


def _summary_table(summary: dict) -> str:
    lines = [
        "",
        "| model | mask_history | NDCG@10 | Recall@10 | MRR@10 | NDCG@20 | Recall@20 | events |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, label in (("test", "textrec"), ("popularity", "popularity")):
        for mask in (True, False):
            m = summary["results"][f"{name}_mask={mask}"]
            lines.append(
                f"| {label} | {mask} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['mrr@10']:.4f} | "
                f"{m['ndcg@20']:.4f} | {m['recall@20']:.4f} | {m['n_events']} |"
            )
    lines.append(
        f"\nbest valid NDCG@10 {summary['best_valid_ndcg@10']:.4f}; {summary['epochs']} epochs, "
        f"{summary['optimizer_steps']} steps, {summary['train_seconds']:.0f}s training, "
        f"{summary['epoch_seconds']:.1f}s/epoch, {summary['examples_per_second']:.0f} examples/s, "
        f"{summary['trainable_params']:,} trainable parameters"
    )
    if "rmse" in summary["results"]["test_mask=True"]:
        lines.append(
            f"ratings: RMSE {summary['results']['test_mask=True']['rmse']:.4f}, "
            f"MAE {summary['results']['test_mask=True']['mae']:.4f}"
        )
    return "\n".join(lines)


def _plot_curve(curve: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curve:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([c["epoch"] + 1 for c in curve], [c["valid_ndcg@10"] for c in curve], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
