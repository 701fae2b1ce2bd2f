"""The pieces `fit` is built from: the Accelerator, the per-process batch, optimizer groups, the learning-rate
schedule, the gathering of in-batch negatives across processes, the loop's state and its result."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from textrec.train.config import LoopConfig


@dataclass
class FitResult:
    """What a `fit` call did. `model` holds the best validated weights when validation was given."""

    best_valid_ndcg: float
    best_step: int
    epochs: float
    steps: int
    examples: int
    train_seconds: float
    stopped: str  # early | budget | epochs
    curve: list = field(default_factory=list)
    text_vectors: torch.Tensor | None = None  # the catalogue's text vectors, when still valid for the final encoder
    encoder_joined: int | None = None  # the epoch after which the encoder trained (None: it never did)
    placement: dict | None = None  # with `check_placement`: what was checked on which device

    def cost(self) -> dict:
        return {"seconds": self.train_seconds, "steps": self.steps, "examples": self.examples, "epochs": self.epochs}


@dataclass
class LoopState:
    """Where a `fit` call stands; checkpointed, so a resumed run continues from it."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    micro_step: int = 0
    best: float = -1.0
    best_step: int = -1
    bad_evals: int = 0
    done: str = ""
    train_seconds: float = 0.0
    examples: int = 0
    last_loss: float = float("nan")
    encoder_moved: bool = True
    encoder_joins: int = -1  # the epoch the encoder joined at, once a warm-up with patience ended (-1: not yet)
    warmup_bad_evals: int = 0
    curve: list = field(default_factory=list)


def make_accelerator(config: LoopConfig, project_dir: str | Path | None = None):
    """The Accelerator a recipe trains with: any device, `config.mixed_precision`, trackers under `project_dir`.
    `training.mixed_precision` is the one precision setting: an `accelerate launch --mixed_precision X` (or an
    accelerate config file) that asks for another one is refused rather than silently overridden."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    check_launcher_precision(config)

    return Accelerator(
        mixed_precision=config.mixed_precision,
        log_with=config.log_with,
        project_dir=str(project_dir) if project_dir else None,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # Several processes without a GPU: accelerate needs cpu=True to form a gloo group (MULTI_CPU).
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
    )


def check_launcher_precision(config: LoopConfig) -> None:
    """Refuse an `accelerate launch --mixed_precision X` (or accelerate config file) that differs from
    `training.mixed_precision`; the launcher's default ("no") leaves the config's choice."""
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher not in ("", "no", config.mixed_precision):
        raise ValueError(
            f"training.mixed_precision is {config.mixed_precision!r} but accelerate launch asks for {launcher!r}: "
            f"set training.mixed_precision={launcher} (the recipe's one precision setting)"
        )


def per_process_batch(config: LoopConfig, num_processes: int) -> int:
    if config.global_batch_size <= 0:
        return config.batch_size
    share = num_processes * config.gradient_accumulation_steps
    if config.global_batch_size % share:
        raise ValueError(
            f"training.global_batch_size: {config.global_batch_size} is not divisible by processes x accumulation "
            f"({num_processes} x {config.gradient_accumulation_steps})"
        )
    return config.global_batch_size // share


def optimizer_groups(model, lr: float, encoder_lr: float) -> list[dict]:
    """Trainable parameters in two groups: the encoder's (LoRA) at `encoder_lr`, all others at `lr`."""
    encoder = [p for n, p in model.named_parameters() if p.requires_grad and "_encoder." in n]
    heads = [p for n, p in model.named_parameters() if p.requires_grad and "_encoder." not in n]
    return [{"params": heads, "lr": lr}] + ([{"params": encoder, "lr": encoder_lr}] if encoder else [])


def make_scheduler(config: LoopConfig, optimizer, total_steps: int):
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    from transformers import get_scheduler

    name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=max(1, total_steps))


def target_gatherer(accelerator) -> Callable[[torch.Tensor], torch.Tensor]:
    """Every process's target ids (padding removed), in process order."""

    def gather(ids: torch.Tensor) -> torch.Tensor:
        padded = accelerator.pad_across_processes(ids, dim=0, pad_index=-1)
        everything = accelerator.gather(padded)
        return everything[everything >= 0]

    gather.processes = accelerator.num_processes
    return gather
