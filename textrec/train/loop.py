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
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from textrec.data.features import HistoryText, ItemTokens, epoch_batches, gather_windows, target_windows, window_bounds
from textrec.data.splits import EvalEvent
from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors, evaluate
from textrec.train.checkpoints import Checkpoints, config_differences, load_trainable_state, trainable_state
from textrec.train.losses import LOGQ_KINDS
from textrec.train.objectives import TextVectorCache, TrainingObjective, encoder_is_trainable
from textrec.train.placement import ForwardDeviceProbe, placement_report

logger = logging.getLogger(__name__)

SCHEDULERS = ("constant", "linear", "cosine", "plateau")
PRECISIONS = ("no", "fp16", "bf16")


def _help(text: str, default=None, **kw):
    if "default_factory" in kw:
        return field(metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text})


@dataclass
class LoopConfig:
    """How `fit` trains: budget, optimisation, validation and checkpoints (the `training` section of a recipe)."""

    seed: int = _help("seed for data order, dropout and sampling", 42)
    epochs: int = _help("maximum epochs (early stopping may end sooner)", 20)
    max_steps: int = _help("stop after this many optimizer steps (-1: no limit)", -1)
    max_train_minutes: float = _help("training time budget in minutes, evaluation excluded (0: none)", 0.0)
    batch_size: int = _help("examples per process per micro-step (the global batch is x processes x accumulation)", 64)
    global_batch_size: int = _help(
        "if > 0, examples per optimizer step over all processes: batch_size becomes "
        "global_batch_size / (processes x accumulation), so 1 and N processes train alike",
        0,
    )
    gradient_accumulation_steps: int = _help("micro-batches per optimizer step", 1)
    lr: float = _help("learning rate of heads, id embeddings and the sequence tower", 1e-3)
    encoder_lr: float = _help("learning rate of the encoder's trained weights (LoRA)", 2e-4)
    weight_decay: float = _help("AdamW weight decay of every trained weight", 0.0)
    scheduler: str = _help(
        "constant | linear | cosine (after warm-up) | plateau (halve on a stalled validation)", "constant"
    )
    warmup_steps: int = _help("linear learning-rate warm-up steps", 0)
    max_grad_norm: float = _help("gradient clipping by global norm (0: off)", 1.0)
    mixed_precision: str = _help("no | fp16 | bf16 (must match the Accelerator's)", "no")
    max_live_items: int = _help("candidate items encoded live (with gradient) per step; the rest read the cache", 64)
    live_catalogue: bool = _help(
        "once the encoder trains, every step encodes the whole catalogue live (with gradient) and history and "
        "candidates read it: no stale cache, and max_live_items / cache_refresh_steps no longer apply. One encoder "
        "pass over the catalogue per step: a GPU setting (memory grows with the catalogue)",
        False,
    )
    check_placement: bool = _help(
        "after the first optimizer step, check that every parameter, gradient, buffer, optimizer state and cached "
        "vector is on the accelerator's device and every module ran there (an error names what is not)",
        False,
    )
    full_softmax_items: int = _help(
        "softmax loss: exact cross-entropy over every item while the catalogue has at most this many items; above "
        "it, the in-batch sampled softmax with inclusion-probability logQ (0: always sampled; the default, chosen "
        "on ml-100k validation: no gain from the full softmax at 1.3-3x the step time on a CPU)",
        0,
    )
    logq: str = _help(
        "sampled softmax correction: inclusion (log P(item among the de-duplicated candidates), the exact one) | "
        "expected_count (log of the expected count, Yi et al. 2019: over-corrects popular items, which pushes them "
        "up at inference; the default, chosen on ml-100k validation for ID-only and text + id models)",
        "expected_count",
    )
    cache_refresh_steps: int = _help("recompute cached item text vectors every N optimizer steps (LoRA only)", 50)
    encoder_warmup_epochs: int = _help(
        "first epochs train heads / ids / sequence tower on frozen text vectors, then the encoder joins", 0
    )
    encoder_warmup_patience: int = _help(
        "if > 0, the warm-up on frozen text vectors ends sooner, after this many validations without a gain (at "
        "most encoder_warmup_epochs), and the encoder joins from the warm-up's best weights: LoRA then starts from a "
        "converged frozen model, and whatever validation gain follows is the adapter's (0: join after "
        "encoder_warmup_epochs, from the last weights)",
        0,
    )
    gather_negatives: bool = _help("with several processes, every process's targets are candidates for all", True)
    l2sp: float = _help("L2-SP penalty towards the starting weights (incremental updates; 0: off)", 0.0)
    eval_batch_size: int = _help("events per evaluation batch", 256)
    eval_every_steps: int = _help("validate every N optimizer steps (0: at every epoch end)", 0)
    patience: int = _help(
        "early stopping: validations without a validation NDCG@10 gain (not counted during encoder warm-up)", 3
    )
    checkpoint_every: int = _help("also checkpoint every N optimizer steps (0: only after each validation)", 200)
    keep_checkpoints: int = _help("checkpoints kept on disk", 2)
    resume: str = _help("auto (latest checkpoint of this run) | never (start afresh) | <checkpoint folder>", "auto")
    log_with: str | None = _help("accelerate tracker, e.g. tensorboard (metrics under <output_dir>)", None)
    progress: bool = _help("show progress bars (main process)", True)

    def __post_init__(self):
        if self.logq not in LOGQ_KINDS:
            raise ValueError(f"training.logq: expected one of {LOGQ_KINDS}, got {self.logq!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"training.scheduler: expected one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"training.mixed_precision: expected one of {PRECISIONS}, got {self.mixed_precision!r}")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "eval_batch_size", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "encoder_lr", "max_train_minutes", "weight_decay", "l2sp", "max_grad_norm"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"training.{name}: must be a finite number >= 0, got {value}")
        if not 0 <= self.encoder_warmup_epochs <= self.epochs:
            raise ValueError("training.encoder_warmup_epochs: must be between 0 and training.epochs")
        if self.encoder_warmup_patience and self.eval_every_steps:
            raise ValueError(
                "training.encoder_warmup_patience: needs validations at epoch ends (training.eval_every_steps: 0): "
                "the encoder joins at an epoch start"
            )
        if self.encoder_warmup_patience < 0 or (self.encoder_warmup_patience and not self.encoder_warmup_epochs):
            raise ValueError(
                "training.encoder_warmup_patience: must be >= 0, and needs training.encoder_warmup_epochs > 0 (the "
                f"longest warm-up), got {self.encoder_warmup_patience} with {self.encoder_warmup_epochs}"
            )


# ----- examples: what one micro-batch is made of -----
class WindowExamples:
    """Sequence-tower examples: windows of `(items, is_target[, ratings])` sequences (see `target_windows`).

    The sequences are held as flat arrays and each window as a (start, end) slice of them, so a batch is one
    numpy gather (`gather_windows`) whatever the batch size and history length."""

    def __init__(self, sequences, max_len: int):
        sequences = [tuple(np.asarray(a) for a in arrays) for arrays in sequences]
        self.max_len = max_len
        self.items = _concat([s[0] for s in sequences], np.int64)
        self.is_target = _concat([s[1] for s in sequences], bool)
        rated = bool(sequences) and len(sequences[0]) > 2
        self.ratings = _concat([s[2] for s in sequences], np.float64) if rated else None
        lengths = np.array([len(s[0]) for s in sequences], dtype=np.int64)
        self._sequences = sequences
        self._which, self.starts, self.ends = window_bounds(lengths, self.is_target, max_len)

    def __len__(self) -> int:
        return len(self.starts)

    @cached_property
    def windows(self) -> list[tuple[np.ndarray, ...]]:
        """The windows as `target_windows` lists them (slices of the sequences)."""
        return target_windows(self._sequences, self.max_len)

    def batch(self, indices, epoch: int, device) -> dict:
        rows = np.asarray(indices, dtype=np.int64)
        return gather_windows(
            self.items, self.is_target, self.ratings, self.starts[rows], self.ends[rows], self.max_len, device
        )


def _concat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=dtype) for a in arrays]) if arrays else np.zeros(0, dtype=dtype)


class TextUserExamples:
    """Text-user-tower examples: `per_user` random (history, next item) pairs per user and epoch.

    Each epoch draws every pair's cut point up front (the same draws as always); the histories themselves are made
    only for the pairs of a batch."""

    def __init__(self, sequences, per_user: int, seed: int):
        self.sequences = [np.asarray(s) for s in sequences if len(s) >= 2]
        self.per_user, self.seed = per_user, seed
        self._epoch, self._cuts = None, None

    def __len__(self) -> int:
        return len(self.sequences) * self.per_user

    def _cuts_of(self, epoch: int) -> np.ndarray:
        """[sequences, per_user] cut points t: pair (s, j) is (sequence s before t, item t)."""
        if self._epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch, 7])
            cuts = [rng.integers(1, len(seq), self.per_user) for seq in self.sequences]
            self._cuts = np.stack(cuts) if cuts else np.zeros((0, self.per_user), dtype=np.int64)
            self._epoch = epoch
        return self._cuts

    def batch(self, indices, epoch: int, device) -> dict:
        cuts = self._cuts_of(epoch)
        rows = np.asarray(indices, dtype=np.int64)
        which, cut = rows // self.per_user, cuts.reshape(-1)[rows]
        chosen = [(self.sequences[s], t) for s, t in zip(which.tolist(), cut.tolist())]
        return {
            "targets": torch.as_tensor([[int(seq[t])] for seq, t in chosen], device=device),
            "histories": [seq[:t].tolist() for seq, t in chosen],
        }


@dataclass
class Validation:
    """Validation events and what ranking them needs; `fit` early-stops on their NDCG@10 (history masked)."""

    events: Sequence[EvalEvent]
    num_items: int
    item_tokens: ItemTokens | None = None
    history_text: HistoryText | None = None


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
    model = objective.model
    batch_size = per_process_batch(config, accelerator.num_processes)
    ckpt = Checkpoints(Path(checkpoint_dir), config, accelerator) if checkpoint_dir is not None else None
    run_config = json.loads(json.dumps(run_config or {}, default=str))
    batches_per_epoch = len(
        epoch_batches(
            len(examples), batch_size, 0, 0, 0, accelerator.num_processes, multiple=config.gradient_accumulation_steps
        )
    )
    steps_per_epoch = batches_per_epoch // config.gradient_accumulation_steps
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps > 0:
        total_steps = min(total_steps, config.max_steps)
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, config.lr, config.encoder_lr), weight_decay=config.weight_decay
    )
    scheduler = _scheduler(config, optimizer, total_steps)
    objective.gather_targets = (
        _gatherer(accelerator) if config.gather_negatives and accelerator.num_processes > 1 else None
    )
    state, cache, best = _LoopState(), TextVectorCache(), None
    if text_vectors is not None and objective.item_tokens is not None:
        if len(text_vectors) != len(objective.item_tokens):
            raise ValueError(f"text_vectors: {len(text_vectors)} rows for {len(objective.item_tokens)} items")
        cache.refresh(text_vectors, 0)
        state.encoder_moved = False
    resume_from = ckpt.find_resume() if ckpt else None
    if resume_from is not None:
        best = ckpt.load(resume_from, model, optimizer, scheduler, cache, state, run_config)
        logger.info(f"{desc}: resumed from {resume_from} (epoch {state.epoch}, step {state.global_step})")
    wrapped, optimizer = accelerator.prepare(objective, optimizer)
    device = accelerator.device
    objective.to(device)
    if cache.vectors is not None:
        cache.vectors = cache.vectors.to(device)
    rank, world = accelerator.process_index, accelerator.num_processes
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    anchor = {n: a.to(device) for n, a in anchor.items() if n in named} if anchor and config.l2sp > 0 else None
    show = config.progress and accelerator.is_local_main_process
    probe, placement = None, None  # `check_placement`: the first step's forward probe, then its report

    def join_epoch() -> int:
        return state.encoder_joins if state.encoder_joins >= 0 else config.encoder_warmup_epochs

    def learning() -> bool:
        return encoder_is_trainable(model) and state.epoch >= join_epoch()

    def encoder_trained() -> bool:  # a whole epoch, or part of one cut short by the budget, after the join
        return state.epoch > join_epoch() or (state.epoch == join_epoch() and state.step_in_epoch > 0)

    def warming_up() -> bool:
        """Validations up to the end of the encoder warm-up epochs do not count towards patience."""
        return encoder_is_trainable(model) and state.epoch <= join_epoch()

    def end_warmup_on_plateau(improved: bool) -> None:
        """With `encoder_warmup_patience`: end the warm-up once it stalls (or at its last epoch), restoring its best
        weights, so that the encoder joins from the converged frozen model."""
        if not (config.encoder_warmup_patience and encoder_is_trainable(model) and state.encoder_joins < 0):
            return
        state.warmup_bad_evals = 0 if improved else state.warmup_bad_evals + 1
        stalled = state.warmup_bad_evals >= config.encoder_warmup_patience
        if stalled or state.epoch >= config.encoder_warmup_epochs:
            state.encoder_joins, state.bad_evals = state.epoch, 0
            if best is not None:
                load_trainable_state(model, best, "best warm-up weights")
            logger.info(f"{desc}: the encoder joins after epoch {state.epoch}, from the warm-up's best weights")

    def refresh_cache(step: int):
        if state.encoder_moved or cache.vectors is None:
            cache.refresh(
                compute_text_vectors(model, objective.item_tokens, config.eval_batch_size, accelerator, None), step
            )
            state.encoder_moved = False
        else:  # the encoder has not moved since the last refresh: same vectors, the schedule restarts
            cache.refresh(cache.vectors, step)

    validation_text = []  # a frozen encoder's vectors of a validation catalogue other than the training one

    def validate():
        if validation is None:
            return None
        text = None
        if model.has_text:
            same_catalogue = validation.item_tokens is None or validation.item_tokens is objective.item_tokens
            if same_catalogue and cache.vectors is not None and not state.encoder_moved:
                text = cache.vectors
            elif not encoder_is_trainable(model) and validation_text:  # a frozen encoder: encoded once
                text = validation_text[0]
            else:
                text = compute_text_vectors(model, validation.item_tokens, config.eval_batch_size, accelerator, None)
                if not encoder_is_trainable(model):
                    validation_text.append(text)
        vectors = compute_item_vectors(model, text, validation.num_items)
        return evaluate(
            model,
            validation.events,
            vectors,
            mask_history=True,
            batch_size=config.eval_batch_size,
            history_text=validation.history_text,
            accelerator=accelerator,
        )

    def after_validation():
        """Record a validation, keep the best weights, decide on early stopping; then checkpoint."""
        nonlocal best
        metrics = validate()
        point = {"epoch": state.epoch, "step": state.global_step, "loss": state.last_loss}
        point["train_seconds"] = state.train_seconds
        if metrics is not None:
            point["valid_ndcg@10"] = metrics["ndcg@10"]
            accelerator.log({f"valid/{k}": v for k, v in metrics.items()}, step=state.global_step)
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(metrics["ndcg@10"])
            improved = metrics["ndcg@10"] > state.best
            if improved:
                state.best, state.best_step, state.bad_evals = metrics["ndcg@10"], state.global_step, 0
                best = trainable_state(model)
            elif not warming_up():  # patience counts once the encoder has joined (or from the start when frozen)
                state.bad_evals += 1
                if state.bad_evals >= config.patience:
                    state.done = state.done or "early"
            if warming_up():
                end_warmup_on_plateau(improved)
            logger.info(
                f"{desc} epoch {state.epoch} step {state.global_step}: valid NDCG@10 {metrics['ndcg@10']:.4f} "
                f"(best {state.best:.4f}; {state.train_seconds:.0f}s)"
            )
        state.curve.append(point)

    # The loop's own random stream (dropout): seeded per process, isolated from the caller's, restored on resume.
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed * 1009 + rank)
        if resume_from is not None:
            ckpt.load_rng(resume_from)
        while state.epoch < config.epochs and not state.done:
            batches = epoch_batches(
                len(examples),
                batch_size,
                config.seed,
                state.epoch,
                rank,
                world,
                multiple=config.gradient_accumulation_steps,
            )
            objective.train()
            objective.max_live_items = config.max_live_items if learning() else 0
            objective.use_full_softmax(config.full_softmax_items)
            objective.logq = config.logq
            objective.live_catalogue = config.live_catalogue and learning()
            refresh_every = config.cache_refresh_steps if learning() and not config.live_catalogue else 0
            bar = tqdm(
                total=len(batches),
                initial=state.step_in_epoch,
                desc=f"{desc} epoch {state.epoch}",
                disable=not show,
                leave=False,
            )
            started, seconds_before = time.perf_counter(), state.train_seconds
            for batch in batches[state.step_in_epoch :]:
                if model.has_text and cache.due(state.global_step, refresh_every):
                    refresh_cache(state.global_step)
                sync = (state.micro_step + 1) % config.gradient_accumulation_steps == 0
                if config.check_placement and placement is None and probe is None:
                    probe = ForwardDeviceProbe(objective, device).__enter__()
                with nullcontext() if sync else accelerator.no_sync(wrapped):
                    inputs = examples.batch(batch, state.epoch, device)
                    loss = wrapped(**inputs, cache=cache, seed=config.seed * 1_000_003 + state.micro_step)
                    if anchor is not None:
                        loss = loss + config.l2sp * sum(((named[n] - a) ** 2).sum() for n, a in anchor.items())
                    accelerator.backward(loss / config.gradient_accumulation_steps)
                state.micro_step += 1
                state.step_in_epoch += 1
                state.examples += int((inputs["targets"] >= 0).sum()) * world
                bar.update(1)
                if not sync:
                    continue
                if config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(wrapped.parameters(), config.max_grad_norm)
                optimizer.step()
                if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step()
                if probe is not None:  # the first step is done: everything it touched must be on the device
                    probe.__exit__()
                    extra = {"text_vector_cache": cache.vectors}
                    placement = placement_report(probe, objective, optimizer, extra, device)
                    logger.info(f"{desc}: placement checked: {placement}")
                    probe = None
                optimizer.zero_grad()
                state.global_step += 1
                state.encoder_moved = state.encoder_moved or learning()
                state.last_loss = float(loss.detach())
                state.train_seconds = seconds_before + time.perf_counter() - started
                bar.set_postfix(loss=f"{state.last_loss:.4f}")
                accelerator.log(
                    {"train/loss": state.last_loss, "train/lr": optimizer.param_groups[0]["lr"]},
                    step=state.global_step,
                )
                over = (0 < config.max_steps <= state.global_step) or (
                    config.max_train_minutes > 0 and state.train_seconds > 60 * config.max_train_minutes
                )
                if over:
                    state.done = "budget"
                    break
                if config.eval_every_steps and state.global_step % config.eval_every_steps == 0:
                    after_validation()
                    if ckpt:
                        ckpt.save(model, optimizer, scheduler, cache, state, best, run_config)
                    if state.done:
                        break
                elif ckpt and config.checkpoint_every and state.global_step % config.checkpoint_every == 0:
                    ckpt.save(model, optimizer, scheduler, cache, state, best, run_config)
            bar.close()
            state.train_seconds = seconds_before + time.perf_counter() - started
            epoch_ended = state.step_in_epoch >= len(batches)
            if epoch_ended:
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
            if not config.eval_every_steps or state.done == "budget":
                after_validation()
            if state.epoch >= config.epochs and not state.done:
                state.done = "epochs"
            if ckpt:
                ckpt.save(model, optimizer, scheduler, cache, state, best, run_config)
    if best is not None:
        load_trainable_state(model, best, "best weights")
    objective.gather_targets = None
    accelerator.free_memory()
    epochs = state.epoch + (state.step_in_epoch / max(1, batches_per_epoch))
    return FitResult(
        best_valid_ndcg=state.best,
        best_step=state.best_step,
        epochs=round(epochs, 3),
        steps=state.global_step,
        examples=state.examples,
        train_seconds=state.train_seconds,
        stopped=state.done or "epochs",
        curve=state.curve,
        text_vectors=cache.vectors if model.has_text and not state.encoder_moved else None,
        encoder_joined=join_epoch() if encoder_is_trainable(model) and encoder_trained() else None,
        placement=placement,
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
