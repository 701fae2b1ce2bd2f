"""The softmax objective: exact full-catalogue softmax, the per-item bias, and the encoder's dropout in live passes."""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from textrec.config import ModelConfig
from textrec.data.synthetic import make_synthetic
from textrec.data.text import ItemTemplate
from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors
from textrec.model.build import build_model, item_tokens
from textrec.model.hub import save_pretrained
from textrec.model.towers import TwoTowerModel
from textrec.serve.recommender import Recommender
from textrec.train.objectives import TextVectorCache, TrainingObjective


def _windows(num_items, rows=6, length=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, num_items, (rows, length), generator=g)
    targets = torch.randint(0, num_items, (rows, length), generator=g)
    inputs[0, :2], targets[0, :2] = -1, -1  # left padding
    return inputs, targets


def test_full_softmax_is_the_exact_cross_entropy_over_every_item():
    torch.manual_seed(0)
    model = TwoTowerModel(num_items=12, dim=8, id_embedding=True, max_history=5, seq_layers=1, item_bias=True)
    with torch.no_grad():
        model.item_bias.normal_()
    model.eval()
    objective = TrainingObjective(model, None, torch.ones(12)).configure(full_softmax_items=100).eval()
    assert objective.full_softmax
    inputs, targets = _windows(12)
    loss = objective(targets, inputs)
    valid = targets >= 0
    users = model.user_states(model.item_vectors(inputs.clamp_min(0)) * (inputs >= 0).unsqueeze(-1), inputs >= 0)
    logits = model.score(users[valid], model.item_vectors(torch.arange(12)), torch.arange(12))
    assert loss.item() == pytest.approx(F.cross_entropy(logits, targets[valid]).item(), rel=1e-5)


def test_full_softmax_equals_the_sampled_loss_when_every_item_is_a_candidate_and_no_correction():
    torch.manual_seed(0)
    model = TwoTowerModel(num_items=10, dim=8, id_embedding=True, max_history=5, seq_layers=1).eval()
    inputs, targets = _windows(10, rows=8)
    valid = targets >= 0
    assert len(torch.unique(targets[valid])) == 10  # the batch's targets cover the catalogue
    full = TrainingObjective(model, None, torch.ones(10)).configure(full_softmax_items=10).eval()
    sampled = TrainingObjective(model, None, torch.ones(10)).configure(logq="none", full_softmax_items=0).eval()
    assert full.full_softmax and not sampled.full_softmax
    # accidental hits: the sampled loss masks other rows' copies of a row's own positive, which the full softmax
    # never has (one column per item), so the two agree exactly
    assert full(targets, inputs).item() == pytest.approx(sampled(targets, inputs).item(), rel=1e-6)
    capped = TrainingObjective(model, None, torch.ones(10)).configure(full_softmax_items=9)
    assert not capped.full_softmax  # above the size limit: the sampled softmax


def test_full_softmax_trains_live_items_from_the_batch_targets(tiny_bert):
    """Live items (with gradient into LoRA) are drawn from the batch's targets, not from the whole catalogue."""
    base, tok = tiny_bert
    cfg = ModelConfig(encoder="tiny", dim=16, max_history=5, seq_layers=1, lora_r=2)
    data = make_synthetic(num_users=20, num_items=40, seed=0)
    model, tok = build_model(cfg, data.num_items, base, tok)
    tokens = item_tokens(ItemTemplate("{title}").render_all(data.items), tok, cfg, model)
    objective = TrainingObjective(model, tokens, torch.ones(40)).configure(max_live_items=3, full_softmax_items=100)
    cache = TextVectorCache()
    cache.refresh(compute_text_vectors(model, tokens, 64, None, None), 0)
    calls = []
    original = model.item_text_vectors
    model.item_text_vectors = lambda ids, mask: calls.append(ids.shape[0]) or original(ids, mask)
    targets = torch.tensor([[5, 6, 7]])
    loss = objective(targets, torch.tensor([[1, 2, 3]]), cache=cache, seed=0)
    loss.backward()
    assert calls == [3]
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)


def test_encoder_dropout_is_switched_off_in_the_base_encoder_but_not_in_lora(tiny_bert):
    base, tok = tiny_bert
    cfg = ModelConfig(encoder="tiny", dim=16, max_history=5, seq_layers=1, lora_dropout=0.3, encoder_dropout=0.0)
    model, _ = build_model(cfg, 10, base, tok)
    drops = {n: m.p for n, m in model.item_encoder.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert drops and all(p == 0.3 for n, p in drops.items() if "lora_dropout" in n)
    assert all(p == 0.0 for n, p in drops.items() if "lora_dropout" not in n)
    with pytest.raises(ValueError, match="model.encoder_dropout"):
        ModelConfig(encoder="tiny", encoder_dropout=1.5)


def test_item_bias_reaches_the_recommender_and_new_items_get_none(tiny_bert, tmp_path):
    """Recommender scores (a bias column in the search matrix) equal model.score with the item bias."""
    base, tok = copy.deepcopy(tiny_bert[0]), tiny_bert[1]
    cfg = ModelConfig(encoder="tiny", dim=16, max_history=5, seq_layers=1, lora_r=2, item_bias=True)
    data = make_synthetic(num_users=20, num_items=30, seed=0)
    torch.manual_seed(0)
    model, tok = build_model(cfg, data.num_items, base, tok)
    with torch.no_grad():
        model.item_bias.copy_(torch.linspace(-2, 2, 30))
    model.eval()
    template = ItemTemplate("{title}")
    out = tmp_path / "model"
    save_pretrained(model, out, cfg, data.item_ids, tokenizer=tok, item_template=template.template)
    items_path = tmp_path / "items.jsonl"
    items_path.write_text("".join(json.dumps(r) + "\n" for r in data.items.to_list()))
    rec = Recommender.from_pretrained(out, items_path, base=copy.deepcopy(tiny_bert[0]), cache_dir=tmp_path)

    history = data.item_ids[:3]
    got = dict(rec.recommend(history, k=30, exclude_seen=False))
    tokens = item_tokens(template.render_all(data.items), tok, cfg, model)
    with torch.no_grad():
        vectors = compute_item_vectors(model, compute_text_vectors(model, tokens, 64, None, None), 30)
        user = model.encode_users_sequence(vectors[None, :3], torch.ones(1, 3, dtype=torch.bool))
        expected = model.score(user, vectors, torch.arange(30))[0]
    for j, item in enumerate(data.item_ids):
        assert got[item] == pytest.approx(float(expected[j]), abs=1e-4)
    (new,) = rec.add_items([{"item_id": "brand-new", "title": data.items["title"][0]}])
    scores = dict(rec.recommend(history, k=31, exclude_seen=False))
    # the same text as item 0 but no trained bias: its score is item 0's minus item 0's bias (-2)
    assert scores[new] == pytest.approx(scores[data.item_ids[0]] + 2.0, abs=1e-3)
    assert np.isfinite(list(scores.values())).all()


def test_the_loop_options_of_the_objective_have_one_source(tmp_path):
    """`fit` sets max_live_items / logq / full_softmax_items from its LoopConfig: the objective's constructor has
    no such knob to be silently overwritten, and `configure` checks what it is given."""
    import inspect

    from textrec.data.features import all_targets
    from textrec.data.splits import leave_one_out
    from textrec.train.loop import LoopConfig, WindowExamples, fit, make_accelerator

    assert not {"max_live_items", "logq", "logq_correction", "full_softmax_items"} & set(
        inspect.signature(TrainingObjective).parameters
    )
    with pytest.raises(ValueError, match="logq: expected one of"):
        TrainingObjective(TwoTowerModel(num_items=4, dim=8, id_embedding=True), None, torch.ones(4)).configure(
            logq="exact"
        )
    data = make_synthetic(num_users=40, num_items=20, seed=0)
    model = TwoTowerModel(num_items=data.num_items, dim=8, id_embedding=True, max_history=5, seq_layers=1)
    objective = TrainingObjective(model, None, torch.ones(data.num_items))
    config = LoopConfig(epochs=1, logq="inclusion", full_softmax_items=1000, max_live_items=7, progress=False)
    examples = WindowExamples(all_targets(leave_one_out(data).train), 5)
    fit(objective, examples, config, make_accelerator(config))
    assert (objective.logq, objective.full_softmax) == ("inclusion", True)


def test_logq_none_leaves_the_sampled_logits_uncorrected():
    model = TwoTowerModel(num_items=10, dim=8, id_embedding=True, max_history=5, seq_layers=1).eval()
    freq = torch.arange(1.0, 11.0)
    plain = TrainingObjective(model, None, freq).configure(logq="none")
    corrected = TrainingObjective(model, None, freq).configure(logq="inclusion")
    targets = torch.tensor([1, 2, 3])
    assert plain.softmax_candidates(targets, np.random.default_rng(0), False)[3] is None
    assert corrected.softmax_candidates(targets, np.random.default_rng(0), False)[3] is not None
