"""Shared fixtures: tiny encoders and tokenizers built in-process (no downloads), synthetic data."""

from __future__ import annotations

import copy
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from textrec.data.synthetic import FILLER_WORDS, TOPIC_WORDS  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "</s>"]


def build_tokenizer(kind: str = "bert"):
    """A word-level fast tokenizer over the synthetic vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = TOPIC_WORDS + FILLER_WORDS + [f"item{i}" for i in range(400)] + ["history", ":", ";", ".", "(", ")"]
    vocab = {w: i for i, w in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit() if kind != "bert" else pre_tokenizers.Whitespace()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="</s>")


def build_tiny_bert(vocab_size: int):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=512,
    )
    return BertModel(config, add_pooling_layer=False)


def build_tiny_llama(vocab_size: int):
    import torch
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=37,
        max_position_embeddings=512,
    )
    return LlamaModel(config)


@pytest.fixture(scope="session")
def _tiny_bert():
    tok = build_tokenizer("bert")
    return build_tiny_bert(len(tok)), tok


@pytest.fixture
def tiny_bert(_tiny_bert):
    """(BertModel, tokenizer): a fresh copy per test."""
    model, tok = _tiny_bert
    return copy.deepcopy(model), tok


@pytest.fixture(scope="session")
def _tiny_llama():
    tok = build_tokenizer("llama")
    return build_tiny_llama(len(tok)), tok


@pytest.fixture
def tiny_llama(_tiny_llama):
    model, tok = _tiny_llama
    return copy.deepcopy(model), tok


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, _tiny_bert):
    """The tiny BERT and its tokenizer saved as a local folder, usable as `model.encoder=<dir>`."""
    path = tmp_path_factory.mktemp("tiny_bert")
    model, tok = _tiny_bert
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, _tiny_llama):
    path = tmp_path_factory.mktemp("tiny_llama")
    model, tok = _tiny_llama
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory, _tiny_bert):
    """A tiny text model trained on planted synthetic data and saved as a textrec folder, with its catalogue."""
    import torch

    from textrec.config import ModelConfig
    from textrec.data.features import all_targets
    from textrec.data.splits import leave_one_out
    from textrec.data.synthetic import make_synthetic
    from textrec.data.text import ItemTemplate
    from textrec.model.build import build_model, item_tokens
    from textrec.model.hub import save_pretrained
    from textrec.train.loop import LoopConfig, WindowExamples, fit, make_accelerator
    from textrec.train.objectives import TrainingObjective

    base, tok = copy.deepcopy(_tiny_bert[0]), _tiny_bert[1]
    data = make_synthetic(num_users=200, num_items=120, seed=1)
    split = leave_one_out(data)
    template = ItemTemplate("{title}")
    cfg = ModelConfig(
        encoder="tiny",
        dim=32,
        max_history=20,
        seq_layers=1,
        temperature=0.1,
        lora_r=4,
        seq_dropout=0.1,
        lora_dropout=0.0,
    )
    torch.manual_seed(0)
    model, tok = build_model(cfg, data.num_items, base, tok)
    tokens = item_tokens(template.render_all(data.items), tok, cfg, model)
    objective = TrainingObjective(model, tokens, torch.ones(data.num_items)).configure(max_live_items=32)
    loop = LoopConfig(
        seed=0,
        epochs=8,
        batch_size=32,
        lr=3e-3,
        encoder_lr=3e-3,
        cache_refresh_steps=10,
        max_live_items=32,
        max_grad_norm=0.0,
        progress=False,
    )
    fit(objective, WindowExamples(all_targets(split.train), 20), loop, make_accelerator(loop))
    out = tmp_path_factory.mktemp("trained") / "model"
    save_pretrained(model.eval(), out, cfg, data.item_ids, tokenizer=tok, item_template=template.template)
    items_path = out.parent / "items.jsonl"
    import json

    items_path.write_text("".join(json.dumps(r) + "\n" for r in data.items.to_list()))
    return out, items_path, data
