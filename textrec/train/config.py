"""`LoopConfig`: how `fit` trains (the `training` section of every recipe: budget, optimisation, validation,
checkpoints), and `TrainingConfig`, the train recipe's `training` section (the loop's options, the output folder,
the loss and E1-cold)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from textrec.train.losses import check_logq, check_loss

SCHEDULERS = ("constant", "linear", "cosine", "plateau")
PRECISIONS = ("no", "fp16", "bf16")
AT_LEAST_ONE = (
    "epochs",
    "batch_size",
    "gradient_accumulation_steps",
    "eval_batch_size",
    "keep_checkpoints",
    "patience",
)
# counts where 0 has a meaning (said in the message) and a negative value none
COUNTS_FROM_ZERO = {
    "global_batch_size": "off",
    "warmup_steps": "no warm-up",
    "max_live_items": "none live",
    "full_softmax_items": "always sampled",
    "cache_refresh_steps": "never refreshed",
    "eval_every_steps": "at every epoch end",
    "checkpoint_every": "only after each validation",
}


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
        "up at inference; the default, chosen on ml-100k validation for ID-only and text + id models) | none (no "
        "correction)",
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
        check_logq(self.logq, "training.")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"training.scheduler: expected one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"training.mixed_precision: expected one of {PRECISIONS}, got {self.mixed_precision!r}")
        for name in AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name}: must be >= 1, got {getattr(self, name)}")
        for name in COUNTS_FROM_ZERO:
            if getattr(self, name) < 0:
                raise ValueError(
                    f"training.{name}: must be >= 0 (0: {COUNTS_FROM_ZERO[name]}), got {getattr(self, name)}"
                )
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


@dataclass
class TrainingConfig(LoopConfig):
    """The train recipe's `training` section: the loop's options (`LoopConfig`), the output folder, the loss and
    E1-cold."""

    output_dir: str = _help("where the model, metrics and checkpoints go", "outputs/train")
    loss: str = _help("softmax (in-batch, logQ: see logq) | bce | mse (ratings)", "softmax")
    num_negatives: int = _help("extra uniformly sampled negatives per batch (bce: per positive)", 0)
    targets_per_user: int = _help("text user tower: training targets per user/epoch", 4)
    cold_item_fraction: float = _help("E1-cold: hold this share of items out of training and report warm/cold", 0.0)
    cold_item_seed: int = _help("E1-cold: seed of the held-out items", 0)
    text_cache_dir: str | None = _help("keep pooled text vectors on disk, keyed by encoder weights and tokens", None)

    def __post_init__(self):
        super().__post_init__()
        check_loss(self.loss, self.num_negatives, "training.")
        if self.targets_per_user < 1:
            raise ValueError(f"training.targets_per_user: must be >= 1, got {self.targets_per_user}")
        if not 0.0 <= self.cold_item_fraction < 1.0:
            raise ValueError(f"training.cold_item_fraction: must be in [0, 1), got {self.cold_item_fraction}")
