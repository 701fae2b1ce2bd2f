"""Pooled text vectors kept on disk: read back only for the same encoder weights and the same item tokens."""

import torch

from textrec.config import ModelConfig
from textrec.data.synthetic import make_synthetic
from textrec.data.text import ItemTemplate
from textrec.model import encode as evaluation
from textrec.model.build import build_model, item_tokens
from textrec.model.encode import cached_text_vectors, compute_text_vectors


def test_text_vectors_are_cached_by_weights_and_tokens(tiny_bert, tmp_path, monkeypatch):
    base, tok = tiny_bert
    data = make_synthetic(num_users=30, num_items=40, seed=0)
    cfg = ModelConfig(encoder="tiny", dim=16, max_history=10, seq_layers=1, train_mode="frozen")
    model, tok = build_model(cfg, data.num_items, base, tok)
    texts = ItemTemplate("{title}").render_all(data.items)
    tokens = item_tokens(texts, tok, cfg, model)
    calls = []
    real = evaluation.compute_text_vectors

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "compute_text_vectors", counting)
    first = cached_text_vectors(model, tokens, tmp_path, desc=None)
    again = cached_text_vectors(model, tokens, tmp_path, desc=None)
    assert len(calls) == 1 and torch.equal(first, again)
    assert torch.allclose(first, compute_text_vectors(model, tokens, desc=None))
    assert len(list(tmp_path.glob("text_vectors-*.safetensors"))) == 1 and not list(tmp_path.glob("*.tmp"))
    fewer = item_tokens(texts[:-1], tok, cfg, model)  # other tokens: another key
    assert len(cached_text_vectors(model, fewer, tmp_path, desc=None)) == 39 and len(calls) == 2
    with torch.no_grad():  # other weights: another key, never the stale vectors
        next(model.item_encoder.parameters()).add_(0.5)
    moved = cached_text_vectors(model, tokens, tmp_path, desc=None)
    assert len(calls) == 3 and not torch.allclose(moved, first)
    assert cached_text_vectors(model, tokens, None, desc=None) is not None and len(calls) == 4  # no folder: no cache
