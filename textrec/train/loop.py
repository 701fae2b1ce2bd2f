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
import logging
import os
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from textrec.data.features import epoch_batches
from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors, evaluate
from textrec.train.checkpoints import Checkpoints, config_differences, load_trainable_state, trainable_state
from textrec.train.config import LoopConfig
from textrec.train.examples import TextUserExamples, Validation, WindowExamples
from textrec.train.objectives import TextVectorCache, TrainingObjective, encoder_is_trainable
from textrec.train.placement import ForwardDeviceProbe, placement_report

logger = logging.getLogger(__name__)


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
class _LoopState:
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
    """The Accelerator a recipe trains with: any device, `config.mixed_precision`, trackers under `project_dir`."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    return Accelerator(
        mixed_precision=config.mixed_precision,
        log_with=config.log_with,
        project_dir=str(project_dir) if project_dir else None,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # Several processes without a GPU: accelerate needs cpu=True to form a gloo group (MULTI_CPU).
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
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


class _Loop:
    """One `fit` call, in named steps: setup, epochs of steps, validations (early stopping, the encoder warm-up),
    checkpoints, and the result."""

    def __init__(self, objective, examples, config: LoopConfig, accelerator, validation, desc: str):
        self.objective, self.examples, self.config = objective, examples, config
        self.accelerator, self.validation, self.desc = accelerator, validation, desc
        self.model = objective.model
        self.batch_size = per_process_batch(config, accelerator.num_processes)
        self.state, self.cache, self.best = _LoopState(), TextVectorCache(), None
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
        self.scheduler = _scheduler(config, optimizer, total_steps)
        several = config.gather_negatives and accelerator.num_processes > 1
        objective.gather_targets = _gatherer(accelerator) if several else None
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
            logger.info(
                f"{self.desc}: resumed from {self.resume_from} (epoch {state.epoch}, step {state.global_step})"
            )
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

    # ----- where the encoder warm-up stands -----
    def join_epoch(self) -> int:
        state = self.state
        return state.encoder_joins if state.encoder_joins >= 0 else self.config.encoder_warmup_epochs

    def learning(self) -> bool:
        return encoder_is_trainable(self.model) and self.state.epoch >= self.join_epoch()

    def encoder_trained(self) -> bool:  # a whole epoch, or part of one cut short by the budget, after the join
        state = self.state
        return state.epoch > self.join_epoch() or (state.epoch == self.join_epoch() and state.step_in_epoch > 0)

    def warming_up(self) -> bool:
        """Validations up to the end of the encoder warm-up epochs do not count towards patience."""
        return encoder_is_trainable(self.model) and self.state.epoch <= self.join_epoch()

    def end_warmup_on_plateau(self, improved: bool) -> None:
        """With `encoder_warmup_patience`: end the warm-up once it stalls (or at its last epoch), restoring its best
        weights, so that the encoder joins from the converged frozen model."""
        config, state = self.config, self.state
        if not (config.encoder_warmup_patience and encoder_is_trainable(self.model) and state.encoder_joins < 0):
            return
        state.warmup_bad_evals = 0 if improved else state.warmup_bad_evals + 1
        stalled = state.warmup_bad_evals >= config.encoder_warmup_patience
        if stalled or state.epoch >= config.encoder_warmup_epochs:
            state.encoder_joins, state.bad_evals = state.epoch, 0
            if self.best is not None:
                load_trainable_state(self.model, self.best, "best warm-up weights")
            logger.info(f"{self.desc}: the encoder joins after epoch {state.epoch}, from the warm-up's best weights")

    # ----- the text cache and validation -----
    def refresh_cache(self, step: int) -> None:
        state, cache = self.state, self.cache
        if state.encoder_moved or cache.vectors is None:
            tokens, batch = self.objective.item_tokens, self.config.eval_batch_size
            cache.refresh(compute_text_vectors(self.model, tokens, batch, self.accelerator, None), step)
            state.encoder_moved = False
        else:  # the encoder has not moved since the last refresh: same vectors, the schedule restarts
            cache.refresh(cache.vectors, step)

    def validation_vectors(self):
        """The pooled text vectors validation ranks with: the cache while it is current, else encoded now."""
        validation, model = self.validation, self.model
        if not model.has_text:
            return None
        same_catalogue = validation.item_tokens is None or validation.item_tokens is self.objective.item_tokens
        if same_catalogue and self.cache.vectors is not None and not self.state.encoder_moved:
            return self.cache.vectors
        if not encoder_is_trainable(model) and self.validation_text:  # a frozen encoder: encoded once
            return self.validation_text[0]
        text = compute_text_vectors(model, validation.item_tokens, self.config.eval_batch_size, self.accelerator, None)
        if not encoder_is_trainable(model):
            self.validation_text.append(text)
        return text

    def validate(self):
        if self.validation is None:
            return None
        vectors = compute_item_vectors(self.model, self.validation_vectors(), self.validation.num_items)
        return evaluate(
            self.model,
            self.validation.events,
            vectors,
            mask_history=True,
            batch_size=self.config.eval_batch_size,
            history_text=self.validation.history_text,
            accelerator=self.accelerator,
        )

    def after_validation(self) -> None:
        """Record a validation, keep the best weights, decide on early stopping."""
        state, config = self.state, self.config
        metrics = self.validate()
        point = {"epoch": state.epoch, "step": state.global_step, "loss": state.last_loss}
        point["train_seconds"] = state.train_seconds
        if metrics is not None:
            point["valid_ndcg@10"] = metrics["ndcg@10"]
            self.accelerator.log({f"valid/{k}": v for k, v in metrics.items()}, step=state.global_step)
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(metrics["ndcg@10"])
            improved = metrics["ndcg@10"] > state.best
            if improved:
                state.best, state.best_step, state.bad_evals = metrics["ndcg@10"], state.global_step, 0
                self.best = trainable_state(self.model)
            elif not self.warming_up():  # patience counts once the encoder has joined (or from the start if frozen)
                state.bad_evals += 1
                if state.bad_evals >= config.patience:
                    state.done = state.done or "early"
            if self.warming_up():
                self.end_warmup_on_plateau(improved)
            logger.info(
                f"{self.desc} epoch {state.epoch} step {state.global_step}: valid NDCG@10 {metrics['ndcg@10']:.4f} "
                f"(best {state.best:.4f}; {state.train_seconds:.0f}s)"
            )
        state.curve.append(point)

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
        objective.train()
        objective.max_live_items = config.max_live_items if learning else 0
        objective.use_full_softmax(config.full_softmax_items)
        objective.logq = config.logq
        objective.live_catalogue = config.live_catalogue and learning
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
        if not sync:
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
            logger.info(f"{self.desc}: placement checked: {self.placement}")
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


def _scheduler(config: LoopConfig, optimizer, total_steps: int):
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    from transformers import get_scheduler

    name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=max(1, total_steps))


def _gatherer(accelerator) -> Callable[[torch.Tensor], torch.Tensor]:
    """Every process's target ids (padding removed), in process order."""

    def gather(ids: torch.Tensor) -> torch.Tensor:
        padded = accelerator.pad_across_processes(ids, dim=0, pad_index=-1)
        everything = accelerator.gather(padded)
        return everything[everything >= 0]

    gather.processes = accelerator.num_processes
    return gather


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
