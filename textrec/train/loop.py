"""The one training loop: every recipe and `update_adapter` train through `fit`.

An explicit Accelerate loop over a `TrainingObjective` (one forward call computes a batch's loss, so DDP sees every
parameter use): optimizer groups (a separate encoder learning rate), warm-up and schedule, clipping, gradient
accumulation, mixed precision, validation with early stopping on NDCG@10 and best-model restore, a step / wall-clock
budget, progress bars and tracker logs on the main process, and checkpoints a killed run resumes from.

Checkpoints hold only what trains: the trainable weights (LoRA, heads, id rows, sequence tower) and the best ones so
far, the optimizer, scheduler and gradient-scaler state, each process's RNG, the item text-vector cache and the loop
position. Tensors go to safetensors and everything else to JSON, so loading one never unpickles anything. A
checkpoint is written into `.tmp_step_N/` and appears as `step_N/` with one rename.

Process parity: `batch_size` is per process, so N processes see N x batch_size examples per step. `global_batch_size`
keeps the global batch whatever the number of processes. In-batch negatives are gathered across processes
(`gather_negatives`), so one process with a batch of 128 and two with 64 each rank every target against the same
candidates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from textrec.data.features import epoch_batches
from textrec.train.checkpoints import Checkpoints, config_differences, load_trainable_state, trainable_state
from textrec.train.config import LoopConfig
from textrec.train.examples import TextUserExamples, Validation, WindowExamples
from textrec.train.objectives import TextVectorCache, TrainingObjective, encoder_is_trainable
from textrec.train.placement import ForwardDeviceProbe, placement_report
from textrec.train.setup import (  # noqa: F401 (re-exported)
    FitResult,
    LoopState,
    make_accelerator,
    make_scheduler,
    optimizer_groups,
    per_process_batch,
    target_gatherer,
)
from textrec.train.validating import ValidationSteps


def fit(
    objective: TrainingObjective,
    examples: WindowExamples | TextUserExamples,
    config: LoopConfig,
    accelerator,
    *,
    validation: Validation | None = None,
    checkpoint_dir: str | Path | None = None,
    run_config: Mapping | None = None,
    anchor: Mapping[str, torch.Tensor] | None = None,
    text_vectors: torch.Tensor | None = None,
    desc: str = "train",
) -> FitResult:
    """Train `objective.model` on `examples`, validating and checkpointing as `config` says.

    With `validation`, early stopping on its NDCG@10 and the best weights restored at the end. With
    `checkpoint_dir`, resumable from a kill at any point (`config.resume`); `run_config` (the run's whole config)
    is stored with every checkpoint and a resume with different values is refused, naming the fields. `anchor`:
    weights the L2-SP penalty pulls towards. `text_vectors`: the catalogue's pooled text vectors under the encoder
    as it is now, when the caller has them (e.g. from its last evaluation): the first catalogue encode is skipped.
    """
    if accelerator is None:
        raise ValueError("fit: an Accelerator is required (textrec.train.loop.make_accelerator(config))")
    if accelerator.mixed_precision != config.mixed_precision:
        raise ValueError(
            f"training.mixed_precision is {config.mixed_precision!r} but the Accelerator was made with "
            f"{accelerator.mixed_precision!r}: make it with textrec.train.loop.make_accelerator(config)"
        )
    if validation is not None and len(validation.events) == 0:
        raise ValueError("validation: no validation events (every user needs 3 interactions for E1; or pass None)")
    loop = _Loop(objective, examples, config, accelerator, validation, desc)
    loop.setup(checkpoint_dir, run_config, anchor, text_vectors)
    return loop.run()


class _Loop(ValidationSteps):
    """One `fit` call, in named steps: setup, epochs of steps, validations (early stopping, the encoder warm-up),
    checkpoints, and the result."""

    def __init__(self, objective, examples, config: LoopConfig, accelerator, validation, desc: str):
        self.objective, self.examples, self.config = objective, examples, config
        self.accelerator, self.validation, self.desc = accelerator, validation, desc
        self.model = objective.model
        self.batch_size = per_process_batch(config, accelerator.num_processes)
        self.state, self.cache, self.best = LoopState(), TextVectorCache(), None
        self.probe, self.placement = None, None  # `check_placement`: the first step's forward probe, its report
        self.validation_text = []  # a frozen encoder's vectors of a validation catalogue other than the training one

    # ----- setup -----
    def setup(self, checkpoint_dir, run_config, anchor, text_vectors) -> None:
        config, accelerator, objective, state = self.config, self.accelerator, self.objective, self.state
        self.ckpt = Checkpoints(Path(checkpoint_dir), config, accelerator) if checkpoint_dir is not None else None
        self.run_config = json.loads(json.dumps(run_config or {}, default=str))
        self.batches_per_epoch = len(self.batches(epoch=0, seed=0, rank=0))
        total_steps = (self.batches_per_epoch // config.gradient_accumulation_steps) * config.epochs
        if config.max_steps > 0:
            total_steps = min(total_steps, config.max_steps)
        groups = optimizer_groups(self.model, config.lr, config.encoder_lr)
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.scheduler = make_scheduler(config, optimizer, total_steps)
        several = config.gather_negatives and accelerator.num_processes > 1
        objective.gather_targets = target_gatherer(accelerator) if several else None
        if text_vectors is not None and objective.item_tokens is not None:
            if len(text_vectors) != len(objective.item_tokens):
                raise ValueError(f"text_vectors: {len(text_vectors)} rows for {len(objective.item_tokens)} items")
            self.cache.refresh(text_vectors, 0)
            state.encoder_moved = False
        self.resume_from = self.ckpt.find_resume() if self.ckpt else None
        if self.resume_from is not None:
            self.best = self.ckpt.load(
                self.resume_from, self.model, optimizer, self.scheduler, self.cache, state, self.run_config
            )
            self.say(f"{self.desc}: resumed from {self.resume_from} (epoch {state.epoch}, step {state.global_step})")
        self.wrapped, self.optimizer = accelerator.prepare(objective, optimizer)
        self.device = accelerator.device
        objective.to(self.device)
        if self.cache.vectors is not None:
            self.cache.vectors = self.cache.vectors.to(self.device)
        self.named = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        use_anchor = anchor and config.l2sp > 0
        self.anchor = {n: a.to(self.device) for n, a in anchor.items() if n in self.named} if use_anchor else None
        self.show = config.progress and accelerator.is_local_main_process

    def batches(self, epoch: int, seed: int | None = None, rank: int | None = None):
        accelerator = self.accelerator
        return epoch_batches(
            len(self.examples),
            self.batch_size,
            self.config.seed if seed is None else seed,
            epoch,
            accelerator.process_index if rank is None else rank,
            accelerator.num_processes,
            multiple=self.config.gradient_accumulation_steps,
        )

    def checkpoint(self) -> None:
        if self.ckpt:
            self.ckpt.save(
                self.model, self.optimizer, self.scheduler, self.cache, self.state, self.best, self.run_config
            )

    # ----- the loop -----
    def run(self) -> FitResult:
        config, state = self.config, self.state
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        # The loop's own random stream (dropout): seeded per process, isolated from the caller's, restored on resume.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(config.seed * 1009 + self.accelerator.process_index)
            if self.resume_from is not None:
                self.ckpt.load_rng(self.resume_from)
            while state.epoch < config.epochs and not state.done:
                self.run_epoch()
        return self.finish()

    def start_epoch(self) -> None:
        """The objective's settings for this epoch: what is live depends on whether the encoder trains yet."""
        config, objective, learning = self.config, self.objective, self.learning()
        objective.train().configure(
            max_live_items=config.max_live_items if learning else 0,
            full_softmax_items=config.full_softmax_items,
            logq=config.logq,
            live_catalogue=config.live_catalogue and learning,
        )
        self.refresh_every = config.cache_refresh_steps if learning and not config.live_catalogue else 0

    def run_epoch(self) -> None:
        config, state = self.config, self.state
        batches = self.batches(state.epoch)
        self.start_epoch()
        bar = tqdm(
            total=len(batches),
            initial=state.step_in_epoch,
            desc=f"{self.desc} epoch {state.epoch}",
            disable=not self.show,
            leave=False,
        )
        self.started, self.seconds_before = time.perf_counter(), state.train_seconds
        for batch in batches[state.step_in_epoch :]:
            stop = self.micro_step(batch, bar)
            if stop:
                break
        bar.close()
        state.train_seconds = self.seconds_before + time.perf_counter() - self.started
        if state.step_in_epoch >= len(batches):
            state.epoch, state.step_in_epoch = state.epoch + 1, 0
        if not config.eval_every_steps or state.done == "budget":
            self.after_validation()
        if state.epoch >= config.epochs and not state.done:
            state.done = "epochs"
        self.checkpoint()

    def micro_step(self, batch, bar) -> bool:
        """Forward and backward one micro-batch, then (every `gradient_accumulation_steps`) the optimizer step;
        True when the epoch must stop (budget, early stopping)."""
        config, state, accelerator = self.config, self.state, self.accelerator
        if self.model.has_text and self.cache.due(state.global_step, self.refresh_every):
            self.refresh_cache(state.global_step)
        sync = (state.micro_step + 1) % config.gradient_accumulation_steps == 0
        if config.check_placement and self.placement is None and self.probe is None:
            self.probe = ForwardDeviceProbe(self.objective, self.device).start()
        with nullcontext() if sync else accelerator.no_sync(self.wrapped):
            inputs = self.examples.batch(batch, state.epoch, self.device)
            loss = self.wrapped(**inputs, cache=self.cache, seed=config.seed * 1_000_003 + state.micro_step)
            if self.anchor is not None:
                penalty = sum(((self.named[n] - a) ** 2).sum() for n, a in self.anchor.items())
                loss = loss + config.l2sp * penalty
            accelerator.backward(loss / config.gradient_accumulation_steps)
        state.micro_step += 1
        state.step_in_epoch += 1
        state.examples += int((inputs["targets"] >= 0).sum()) * accelerator.num_processes
        bar.update(1)
        if not self.accumulate_loss(loss, sync):  # at an optimizer step: the losses since the last one are finite
            return False
        self.optimizer_step()
        state.last_loss = float(loss.detach())
        state.train_seconds = self.seconds_before + time.perf_counter() - self.started
        bar.set_postfix(loss=f"{state.last_loss:.4f}")
        lr = self.optimizer.param_groups[0]["lr"]
        accelerator.log({"train/loss": state.last_loss, "train/lr": lr}, step=state.global_step)
        return self.after_step()

    def optimizer_step(self) -> None:
        config, state = self.config, self.state
        if config.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.wrapped.parameters(), config.max_grad_norm)
        self.optimizer.step()
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        if self.probe is not None:  # the first step is done: everything it touched must be on the device
            self.probe.stop()
            extra = {"text_vector_cache": self.cache.vectors}
            self.placement = placement_report(self.probe, self.objective, self.optimizer, extra, self.device)
            self.say(f"{self.desc}: placement checked: {self.placement}")
            self.probe = None
        self.optimizer.zero_grad()
        state.global_step += 1
        state.encoder_moved = state.encoder_moved or self.learning()

    def after_step(self) -> bool:
        """The budget, step-wise validation and checkpoints after an optimizer step; True to stop the epoch."""
        config, state = self.config, self.state
        over = (0 < config.max_steps <= state.global_step) or (
            config.max_train_minutes > 0 and state.train_seconds > 60 * config.max_train_minutes
        )
        if over:
            state.done = "budget"
            return True
        if config.eval_every_steps and state.global_step % config.eval_every_steps == 0:
            self.after_validation()
            self.checkpoint()
            return bool(state.done)
        if config.checkpoint_every and state.global_step % config.checkpoint_every == 0:
            self.checkpoint()
        return False

    def finish(self) -> FitResult:
        state, model = self.state, self.model
        if self.best is not None:
            load_trainable_state(model, self.best, "best weights")
        self.check_finite_weights()
        self.objective.gather_targets = None
        self.accelerator.free_memory()
        epochs = state.epoch + (state.step_in_epoch / max(1, self.batches_per_epoch))
        trainable = encoder_is_trainable(model)
        return FitResult(
            best_valid_ndcg=state.best,
            best_step=state.best_step,
            epochs=round(epochs, 3),
            steps=state.global_step,
            examples=state.examples,
            train_seconds=state.train_seconds,
            stopped=state.done or "epochs",
            curve=state.curve,
            text_vectors=self.cache.vectors if model.has_text and not state.encoder_moved else None,
            encoder_joined=self.join_epoch() if trainable and self.encoder_trained() else None,
            placement=self.placement,
        )


__all__ = [
    "FitResult",
    "LoopConfig",
    "TextUserExamples",
    "Validation",
    "WindowExamples",
    "config_differences",
    "fit",
    "make_accelerator",
    "optimizer_groups",
    "per_process_batch",
    "trainable_state",
]
