"""Learning on planted synthetic data: training must beat the untrained model and popularity."""

import torch

from textrec.config import ModelConfig
from textrec.data.features import all_targets
from textrec.data.splits import leave_one_out
from textrec.data.synthetic import make_synthetic
from textrec.data.text import ItemTemplate
from textrec.evaluate.ranking import (
    compute_item_vectors,
    compute_text_vectors,
    evaluate,
    evaluate_scores,
    popularity_scores,
)
from textrec.model.build import build_model, item_tokens
from textrec.train.loop import LoopConfig, WindowExamples, fit, make_accelerator
from textrec.train.objectives import TrainingObjective


def _valid_ndcg(model, tokens, split):
    text = compute_text_vectors(model, tokens, desc=None) if model.has_text else None
    vectors = compute_item_vectors(model, text, model.num_items)
    return evaluate(model, split.valid, vectors, mask_history=True)["ndcg@10"]


def _train(model, tokens, split, epochs=4, max_len=20, refresh=10, max_live_items=64, **objective_kwargs):
    """Train through the library's one loop (no validation: a fixed number of epochs); returns the last loss."""
    freq = popularity_scores(split.train, model.num_items).float() + 1
    objective = TrainingObjective(model, tokens, freq, **objective_kwargs)
    config = LoopConfig(
        seed=0,
        epochs=epochs,
        batch_size=32,
        lr=3e-3,
        encoder_lr=3e-3,
        cache_refresh_steps=refresh,
        max_live_items=max_live_items,
        max_grad_norm=0.0,
        progress=False,
    )
    result = fit(objective, WindowExamples(all_targets(split.train), max_len), config, make_accelerator(config))
    return result.curve[-1]["loss"]


def test_text_model_learns_planted_signal_with_lora(tiny_bert):
    base, tok = tiny_bert
    data = make_synthetic(num_users=200, num_items=120, seed=1)
    split = leave_one_out(data)
    cfg = ModelConfig(encoder="tiny", dim=32, max_history=20, seq_layers=1, temperature=0.1, lora_r=4, seq_dropout=0.1)
    model, tok = build_model(cfg, data.num_items, base, tok)
    tokens = item_tokens(ItemTemplate("{title}").render_all(data.items), tok, cfg, model)
    base_before = {
        n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n and "item_encoder" in n
    }
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    untrained = _valid_ndcg(model, tokens, split)
    _train(model, tokens, split, epochs=8, max_live_items=32)
    trained = _valid_ndcg(model, tokens, split)
    popularity = evaluate_scores(popularity_scores(split.train, data.num_items), split.valid)["ndcg@10"]
    assert trained > untrained + 0.05, (trained, untrained)
    assert trained > popularity + 0.05, (trained, popularity)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in base_before.items()), "frozen base weights changed"
    assert any(not torch.equal(params[n], p) for n, p in lora_before.items() if "lora_B" in n), "LoRA unchanged"


def test_id_only_model_and_bce_loss_reduce_training_loss():
    data = make_synthetic(num_users=120, num_items=60, seed=2)
    split = leave_one_out(data)
    cfg = ModelConfig(encoder=None, id_embedding=True, dim=16, max_history=20, seq_layers=1, temperature=0.1)
    for kwargs in ({}, {"loss": "bce", "num_negatives": 8}):
        torch.manual_seed(0)
        model, _ = build_model(cfg, data.num_items)
        first = _train(model, None, split, epochs=1, **kwargs)
        later = _train(model, None, split, epochs=4, **kwargs)
        assert later < first, (kwargs, first, later)
