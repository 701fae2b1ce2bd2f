"""Shared fixtures: tiny encoders and tokenizers built in-process (no downloads), synthetic data."""

from __future__ import annotations

import copy
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from textrec.synthetic import FILLER_WORDS, TOPIC_WORDS  # noqa: E402

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
