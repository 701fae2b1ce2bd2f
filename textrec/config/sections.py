"""The `data` and `model` sections every recipe shares: `DataConfig` (where the interactions and items are, how
item text is rendered) and `ModelConfig` (the towers, the encoder, LoRA, the score)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


def _help(text: str, default=dataclasses.MISSING, **kw):
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text}, **kw)


@dataclass
class DataConfig:
    """Which interactions and items to read, and how to render item text."""

    format: str = _help("recbole | grouplens | tabular | synthetic", "recbole")
    path: str = _help(
        "folder of the data (recbole: holds <name>.inter/.item) or the interactions file", "data/ml-100k"
    )
    name: str | None = _help("recbole dataset name (default: the folder name)", None)
    items_path: str | None = _help("tabular only: the item catalogue file", None)
    columns: dict = _help(
        "tabular only: textrec field -> interaction file column (user_id, item_id, timestamp, rating)", {}
    )
    item_columns: dict = _help("tabular only: {'item_id': <item file column>}", {})
    item_template: str | None = _help("str.format template over item fields; None = a default for the fields", None)
    synthetic_users: int = _help("synthetic only: number of users", 200)
    synthetic_items: int = _help("synthetic only: number of items", 120)
    synthetic_drift: float = _help("synthetic only: per-interaction chance that a user's taste moves", 0.0)
    synthetic_shift_at: float | None = _help("synthetic only: share of the stream where behaviour changes", None)
    synthetic_drift_after: float = _help("synthetic only: the drift after synthetic_shift_at", 1.0)
    seed: int = _help("seed of the synthetic generator", 0)

    def __post_init__(self):
        if self.format not in ("recbole", "grouplens", "tabular", "synthetic"):
            raise ValueError(f"data.format: expected recbole, grouplens, tabular or synthetic, got {self.format!r}")
        if self.format == "tabular" and not self.items_path:
            raise ValueError("data.items_path: required when data.format is 'tabular'")
        for name in ("synthetic_users", "synthetic_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("synthetic_drift", "synthetic_drift_after"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"data.{name}: must be in [0, 1], got {getattr(self, name)}")


@dataclass
class ModelConfig:
    """The towers: encoder, pooling, LoRA, user tower and scoring."""

    encoder: str | None = _help(
        "text encoder: minilm | smollm2-135m | a Hub id | a local folder; null = ID-only", "minilm"
    )
    revision: str | None = _help("revision of a Hub encoder (recorded in the artifact)", None)
    pooling: str = _help("auto | cls | mean | last (auto: last for decoder-only models, mean otherwise)", "auto")
    max_item_tokens: int = _help("item text is truncated to this many tokens", 32)
    user_tower: str = _help(
        "sequence (transformer over history item vectors) | text (history rendered as text)", "sequence"
    )
    share_encoder: bool = _help("text user tower: share the item tower's encoder and adapter", True)
    history_text_items: int = _help("text user tower: how many recent items are rendered", 10)
    max_history_tokens: int = _help("text user tower: history text is truncated (oldest first) to this", 256)
    id_embedding: bool = _help(
        "add a learned per-item id embedding to the item vector (ID-only if encoder=null)", False
    )
    dim: int = _help("dimension of item and user vectors", 64)
    similarity: str = _help("cosine | dot", "cosine")
    temperature: float = _help("scores are similarity / temperature (the initial value if learned)", 0.05)
    learn_temperature: bool = _help("learn the temperature (as its log, floored at 0.01) with the heads", False)
    item_bias: bool = _help(
        "a learned per-item logit bias (popularity) beside the vector direction; new items get 0", False
    )
    id_dropout: float = _help(
        "text + id towers: each training step treats this share of items as new (no id part, no bias), so that "
        "items added later by text alone are served by a part the model trained",
        0.0,
    )
    text_loss_weight: float = _help(
        "text + id towers: weight of an auxiliary loss that ranks the targets with text-only item vectors", 0.0
    )
    user_content: int = _help(
        "sequence user tower: add the unit-length mean of the last N history item vectors (learned scale), a "
        "content path that carries over to new items and catalogues; 0 = off",
        0,
    )
    encoder_dropout: float | None = _help(
        "dropout inside the base encoder while training (null = the encoder's own, 0.1 for MiniLM); 0 makes live "
        "item vectors match the cached, eval-mode ones they compete with in one softmax",
        0.0,
    )
    max_history: int = _help("sequence user tower: the last N history items are read", 50)
    seq_layers: int = _help("sequence user tower: transformer layers", 2)
    seq_heads: int = _help("sequence user tower: attention heads", 2)
    seq_dropout: float = _help("sequence user tower: dropout", 0.2)
    seq_position_std: float | None = _help(
        "sequence user tower: init std of the position embeddings (0.02 as in BERT / GPT-2; null: torch's N(0, 1), "
        "the default before 2026-11-25, whose norm of about sqrt(dim) swamps item vectors of norm about 1 at the "
        "input: ML-1M ID-only stayed at the popularity level with it)",
        0.02,
    )
    train_mode: str = _help("encoder training: lora | frozen | full | top_layers", "lora")
    top_layers: int = _help("train_mode=top_layers: how many top layers train", 2)
    lora_r: int = _help("LoRA rank", 8)
    lora_alpha: int = _help("LoRA alpha (scale = alpha / r)", 16)
    lora_dropout: float = _help("LoRA dropout", 0.05)
    lora_target_modules: list | None = _help("LoRA target modules; null = peft's default for the architecture", None)
    lora_top_layers: int = _help(
        "LoRA on the top k encoder layers only (0: every layer). With k > 0 the bottom layers stay frozen, so they "
        "run once per catalogue and their output is cached: a live item costs the top k layers' forward and "
        "backward only, and training can afford many more live items (training.max_live_items)",
        0,
    )

    def __post_init__(self):
        checks = {
            "pooling": ("auto", "cls", "mean", "last"),
            "user_tower": ("sequence", "text"),
            "similarity": ("cosine", "dot"),
            "train_mode": ("lora", "frozen", "full", "top_layers"),
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"model.{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        if self.encoder in (None, "", "none"):
            self.encoder = None
            if not self.id_embedding:
                raise ValueError("model.id_embedding: must be true when model.encoder is null (ID-only model)")
            if self.user_tower == "text":
                raise ValueError("model.user_tower: 'text' needs a model.encoder")
        if self.lora_top_layers < 0 or (self.lora_top_layers and self.train_mode != "lora"):
            raise ValueError(
                f"model.lora_top_layers: must be >= 0, and > 0 only with model.train_mode lora, got "
                f"{self.lora_top_layers} with {self.train_mode!r}"
            )
        for name in ("dim", "max_history", "max_item_tokens", "seq_layers", "seq_heads", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"model.temperature: must be a finite number > 0, got {self.temperature}")
        if self.encoder_dropout is not None and not 0 <= self.encoder_dropout < 1:
            raise ValueError(f"model.encoder_dropout: must be in [0, 1) or null, got {self.encoder_dropout}")
        if not 0 <= self.id_dropout < 1:
            raise ValueError(f"model.id_dropout: must be in [0, 1), got {self.id_dropout}")
        if self.text_loss_weight < 0 or self.user_content < 0:
            raise ValueError("model.text_loss_weight and model.user_content: must be >= 0")
        if (self.id_dropout or self.text_loss_weight) and not (self.encoder and self.id_embedding):
            raise ValueError("model.id_dropout / model.text_loss_weight: need model.encoder and model.id_embedding")
        if self.user_content and self.user_tower != "sequence":
            raise ValueError("model.user_content: needs model.user_tower 'sequence'")
        for name in ("seq_dropout", "lora_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"model.{name}: must be in [0, 1), got {getattr(self, name)}")
        if self.seq_position_std is not None and not (
            math.isfinite(self.seq_position_std) and self.seq_position_std > 0
        ):
            raise ValueError(
                f"model.seq_position_std: must be a finite number > 0 or null, got {self.seq_position_std}"
            )
        if self.dim % self.seq_heads:
            raise ValueError(f"model.seq_heads: must divide model.dim ({self.dim}), got {self.seq_heads}")
