"""From configuration to objects: data, encoder, model, item tokens."""

from __future__ import annotations

import copy
import logging

import torch

from textrec.config import DataConfig, ModelConfig
from textrec.data.features import HistoryText, ItemTokens
from textrec.data.records import RecData
from textrec.data.text import ItemTemplate, default_template, tokenize_texts
from textrec.model.encoders import (
    DECODER_MODEL_TYPES,
    TextEncoder,
    apply_train_mode,
    default_pooling,
    load_encoder_and_tokenizer,
)
from textrec.model.towers import TwoTowerModel

logger = logging.getLogger(__name__)


def item_template(data: RecData, cfg: DataConfig) -> ItemTemplate:
    template = ItemTemplate(cfg.item_template) if cfg.item_template else default_template(data.text_fields)
    template.check(data.items.column_names, source=f"{data.source} (item catalogue)")
    return template


def is_decoder(encoder_model) -> bool:
    return encoder_model.config.model_type in DECODER_MODEL_TYPES


def build_text_encoder(cfg: ModelConfig, base=None, tokenizer=None):
    """Load (or take) a base encoder, apply the train mode (LoRA, ...) and pooling -> (TextEncoder, tokenizer)."""
    if base is None:
        base, tokenizer = load_encoder_and_tokenizer(cfg.encoder, cfg.revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    pooling = default_pooling(base.config.model_type) if cfg.pooling == "auto" else cfg.pooling
    if cfg.encoder_dropout is not None:  # before LoRA is applied: LoRA's own dropout is `lora_dropout`
        for module in base.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = cfg.encoder_dropout
    trainable = apply_train_mode(
        base,
        cfg.train_mode,
        cfg.top_layers,
        cfg.lora_r,
        cfg.lora_alpha,
        cfg.lora_dropout,
        cfg.lora_target_modules,
        cfg.lora_top_layers,
    )
    return TextEncoder(trainable, pooling, cfg.lora_top_layers), tokenizer


def build_model(cfg: ModelConfig, num_items: int, base=None, tokenizer=None):
    """Build a `TwoTowerModel` from config -> (model, tokenizer or None). `base`/`tokenizer` may be given to
    reuse an already loaded encoder (it is then modified in place by LoRA)."""
    item_encoder = user_encoder = None
    if cfg.encoder is not None or base is not None:
        user_base = copy.deepcopy(base) if (cfg.user_tower == "text" and not cfg.share_encoder and base) else None
        item_encoder, tokenizer = build_text_encoder(cfg, base, tokenizer)
        if cfg.user_tower == "text" and not cfg.share_encoder:
            user_encoder, _ = build_text_encoder(cfg, user_base, tokenizer)
    model = TwoTowerModel(
        num_items=num_items,
        dim=cfg.dim,
        item_encoder=item_encoder,
        user_tower=cfg.user_tower,
        user_encoder=user_encoder,
        id_embedding=cfg.id_embedding,
        similarity=cfg.similarity,
        temperature=cfg.temperature,
        max_history=cfg.max_history,
        seq_layers=cfg.seq_layers,
        seq_heads=cfg.seq_heads,
        seq_dropout=cfg.seq_dropout,
        seq_position_std=cfg.seq_position_std,
        item_bias=cfg.item_bias,
        id_dropout=cfg.id_dropout,
        text_loss_weight=cfg.text_loss_weight,
        user_content=cfg.user_content,
        learn_temperature=cfg.learn_temperature,
    )
    return model, tokenizer


def item_tokens(texts, tokenizer, cfg: ModelConfig, model: TwoTowerModel) -> ItemTokens:
    """Tokenize the catalogue once; decoder-only encoders get an EOS appended so the last token sees the text."""
    decoder = model.item_encoder is not None and model.item_encoder.pooling == "last"
    ds = tokenize_texts(texts, tokenizer, cfg.max_item_tokens, append_eos=decoder)
    return ItemTokens(ds["input_ids"], tokenizer.pad_token_id)


def history_text(texts, tokenizer, cfg: ModelConfig) -> HistoryText | None:
    if cfg.user_tower != "text":
        return None
    return HistoryText(texts, tokenizer, cfg.history_text_items, cfg.max_history_tokens)


def retarget(model, num_items: int):
    """Point a text-only model at another catalogue of `num_items` items (it has no per-item weights: item vectors
    come from text, so only the catalogue size, which the full softmax and `rankable_items` read, changes)."""
    if model.id_embedding is not None or model.item_bias is not None:
        raise ValueError("retarget: only a text-only item tower (no id embedding, no item bias) ranks a new catalogue")
    model.num_items = num_items
    model.id_trained = torch.ones(num_items, dtype=torch.bool, device=model.id_trained.device)
    return model
