"""Cached lower layers (`model.lora_top_layers`): the top-k forward from cached states equals the full forward,
gradients reach only the top layers' adapters, training through the loop learns and resumes exactly."""

import copy

import pytest
import torch
from helpers import kill_at_epoch

from textrec.config import ModelConfig
from textrec.data.features import all_targets
from textrec.data.splits import leave_one_out
from textrec.data.synthetic import make_synthetic
from textrec.data.text import ItemTemplate
from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors, evaluate
from textrec.model.build import build_model, item_tokens
from textrec.model.encoders import TextEncoder, apply_train_mode
from textrec.model.layer_cache import LowerStateCache, lower_states, top_forward
from textrec.train.loop import LoopConfig, Validation, WindowExamples, fit, make_accelerator, trainable_state
from textrec.train.objectives import TrainingObjective

TEXTS = ["a red fox jumps over the dog", "the blue whale", "x", "ghosts of the slow and the wild"]


def _lora_encoder(model, pooling):
    encoder = TextEncoder(apply_train_mode(model, "lora", lora_r=4, lora_top_layers=1), pooling, cached_top_layers=1)
    with torch.no_grad():  # a non-zero adapter, so that the top layers differ from the base
        for name, p in encoder.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return encoder.eval()


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_the_top_layers_from_cached_states_equal_the_full_forward(kind, tiny_bert, tiny_llama):
    model, tok = tiny_bert if kind == "bert" else tiny_llama
    encoder = _lora_encoder(model, "mean" if kind == "bert" else "last")
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    full = encoder(batch["input_ids"], batch["attention_mask"])
    states = lower_states(encoder, batch["input_ids"], batch["attention_mask"], 1)
    top = top_forward(encoder, states, batch["attention_mask"], 1)
    assert torch.allclose(top, full, atol=1e-5), (top - full).abs().max()
    top.sum().backward()  # gradients reach the top layer's adapters; the bottom layer has none
    adapters = {n: p for n, p in encoder.named_parameters() if "lora_" in n}
    assert adapters and all(".1." in n for n in adapters), sorted(adapters)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in adapters.items() if "lora_A" in n)
    assert not [n for n, p in encoder.named_parameters() if p.requires_grad and "lora_" not in n]


def test_the_catalogue_cache_gives_every_items_full_vector(tiny_bert):
    model, tok = tiny_bert
    cfg = ModelConfig(encoder="tiny", dim=16, max_history=5, seq_layers=1, lora_r=4, lora_top_layers=1)
    towers, tok = build_model(cfg, len(TEXTS), model, tok)
    tokens = item_tokens(TEXTS, tok, cfg, towers)
    encoder = towers.item_encoder.eval()
    cache = LowerStateCache(encoder, tokens, batch_size=3)
    ids = torch.tensor([3, 0, 2])
    input_ids, mask = tokens.batch(ids.tolist())
    assert torch.allclose(cache.encode(encoder, ids), towers.item_text_vectors(input_ids, mask), atol=1e-5)
    with pytest.raises(ValueError, match="lora_top_layers"):
        ModelConfig(encoder="tiny", train_mode="frozen", lora_top_layers=1)


def _fit(base, tok, epochs, checkpoint_dir=None, max_live_items=1000, users=80, items=40):
    data = make_synthetic(num_users=users, num_items=items, seed=1)
    split = leave_one_out(data)
    torch.manual_seed(0)
    cfg = ModelConfig(
        encoder="tiny", dim=32, max_history=20, seq_layers=1, lora_r=4, lora_top_layers=1, temperature=0.1
    )
    model, tok = build_model(cfg, data.num_items, copy.deepcopy(base), tok)
    tokens = item_tokens(ItemTemplate("{title}").render_all(data.items), tok, cfg, model)
    objective = TrainingObjective(model, tokens, torch.ones(data.num_items))
    text = compute_text_vectors(model, tokens, desc=None)
    objective.untrained = evaluate(model, split.valid, compute_item_vectors(model, text, data.num_items))["ndcg@10"]
    loop = LoopConfig(
        epochs=epochs, batch_size=16, lr=3e-3, encoder_lr=3e-3, max_live_items=max_live_items, seed=0,
        cache_refresh_steps=3, checkpoint_every=0, progress=False, patience=10,
    )  # fmt: skip
    result = fit(
        objective, WindowExamples(all_targets(split.train), 20), loop, make_accelerator(loop),
        validation=Validation(split.valid, data.num_items, tokens), checkpoint_dir=checkpoint_dir,
    )  # fmt: skip
    return objective, result


def test_training_from_cached_states_learns_with_every_candidate_live(tiny_bert):
    base, tok = tiny_bert
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    objective, result = _fit(base, tok, epochs=8, users=200, items=120)
    assert objective.lower_states is not None and len(objective.lower_states) == objective.model.num_items
    assert result.best_valid_ndcg > objective.untrained + 0.05, (result.best_valid_ndcg, objective.untrained)
    weights = dict(objective.model.item_encoder.model.get_base_model().named_parameters())
    assert all(torch.equal(weights[n], p) for n, p in before.items() if n in weights)  # the base never moves
    lora_b = [p for n, p in objective.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # the adapter trained


def test_a_killed_run_resumes_to_the_uninterrupted_result(tiny_bert, tmp_path, monkeypatch):
    base, tok = tiny_bert
    unbroken, _ = _fit(base, tok, epochs=3, checkpoint_dir=tmp_path / "a")
    with monkeypatch.context() as m:
        kill_at_epoch(m, 2)
        with pytest.raises(KeyboardInterrupt):
            _fit(base, tok, epochs=3, checkpoint_dir=tmp_path / "b")
    resumed, _ = _fit(base, tok, epochs=3, checkpoint_dir=tmp_path / "b")
    a, b = trainable_state(unbroken.model), trainable_state(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
