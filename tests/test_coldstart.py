"""E1-cold (new items known only by their text), id dropout, the text-only loss and the user tower's content path."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from textrec.config import ModelConfig
from textrec.data.features import all_targets
from textrec.data.splits import leave_one_out
from textrec.data.synthetic import make_synthetic
from textrec.data.text import ItemTemplate
from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors, popularity_scores
from textrec.model.build import build_model, item_tokens
from textrec.model.towers import TwoTowerModel
from textrec.protocols.coldstart import cold_start_report, hold_out_items, slice_of_events, slices, without_items
from textrec.train.loop import LoopConfig, WindowExamples, fit, make_accelerator
from textrec.train.objectives import TrainingObjective


def test_hold_out_items_is_seeded_and_sized():
    a, b = hold_out_items(200, 0.1, seed=0), hold_out_items(200, 0.1, seed=0)
    assert np.array_equal(a, b) and len(a) == 20 and len(set(a.tolist())) == 20
    assert not np.array_equal(a, hold_out_items(200, 0.1, seed=1))
    with pytest.raises(ValueError, match="fraction"):
        hold_out_items(200, 1.0)
    with pytest.raises(ValueError, match="no item"):
        hold_out_items(3, 0.1)


def test_without_items_removes_them_from_training_and_histories_only():
    data = make_synthetic(num_users=40, num_items=30, seed=0)
    split = leave_one_out(data)
    cold = hold_out_items(data.num_items, 0.2, seed=0).tolist()
    out = without_items(split, cold)
    assert not set(np.concatenate(out.train).tolist()) & set(cold)
    assert all(not set(e.history) & set(cold) for e in out.valid + out.test)
    # the events are E1's, cold targets included; what is not cold is kept in order
    assert [e.target for e in out.test] == [e.target for e in split.test]
    assert any(e.target in cold for e in out.test + out.valid)
    for before, after in zip(split.train, out.train):
        assert after.tolist() == [i for i in before.tolist() if i not in cold]
    for before, after in zip(split.train_ratings, out.train_ratings):
        assert len(before) >= len(after)
    assert sum(len(s) for s in out.train_ratings) == out.num_train_interactions
    parts = slices(out.test, cold)
    assert len(parts["warm"]) + len(parts["cold"]) == len(out.test)
    assert slice_of_events(out.test, cold).count("cold") == len(parts["cold"])


def test_content_path_is_the_unit_mean_of_the_last_items_and_causal():
    torch.manual_seed(0)
    model = TwoTowerModel(num_items=10, dim=8, id_embedding=True, max_history=6, user_content=3).eval()
    vectors = torch.randn(2, 6, 8)
    mask = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    vectors = vectors * mask.unsqueeze(-1)
    states = model.user_states(vectors, mask)
    plain = model.sequence(vectors, mask)
    for row in range(2):
        last = F.normalize(vectors[row, 3:6], dim=-1).mean(0)  # positions 3, 4, 5: the last 3 at position 5
        expected = plain[row, 5] + model.content_scale * F.normalize(last, dim=-1)
        assert torch.allclose(states[row, 5], expected, atol=1e-5)
    changed = vectors.clone()
    changed[:, 5] = torch.randn(8)
    again = model.user_states(changed, mask)
    assert torch.allclose(again[:, :5], states[:, :5], atol=1e-5)  # an earlier state never sees later items
    assert not torch.allclose(again[:, 5], states[:, 5])


def test_id_dropout_and_text_loss_need_text_and_ids():
    with pytest.raises(ValueError, match="id_dropout"):
        ModelConfig(encoder=None, id_embedding=True, id_dropout=0.5)
    with pytest.raises(ValueError, match="text_loss_weight"):
        ModelConfig(encoder="minilm", id_embedding=False, text_loss_weight=1.0)
    with pytest.raises(ValueError, match="user_content"):
        ModelConfig(user_tower="text", user_content=5)


def test_id_dropout_drops_the_same_items_in_history_and_candidates(tiny_bert):
    """The dropped items' id rows and biases get no gradient; every other item in the batch does."""
    base, tok = tiny_bert
    data = make_synthetic(num_users=30, num_items=40, seed=0)
    split = leave_one_out(data)
    cfg = ModelConfig(
        encoder="tiny",
        dim=16,
        max_history=20,
        seq_layers=1,
        id_embedding=True,
        item_bias=True,
        id_dropout=0.5,
        train_mode="frozen",
    )
    model, tok = build_model(cfg, data.num_items, base, tok)
    tokens = item_tokens(ItemTemplate("{title}").render_all(data.items), tok, cfg, model)
    objective = TrainingObjective(model, tokens, torch.ones(data.num_items)).configure(full_softmax_items=1000)
    from textrec.train.objectives import TextVectorCache

    cache = TextVectorCache()
    cache.refresh(compute_text_vectors(model, tokens, desc=None), 0)
    batch = WindowExamples(all_targets(split.train), 20).batch(range(16), 0, "cpu")
    objective.train()
    loss = objective(batch["targets"], batch["inputs"], cache=cache, seed=7)
    id_grad, bias_grad = torch.autograd.grad(loss, [model.id_embedding.weight, model.item_bias])
    dropped = np.random.default_rng(7).random(data.num_items) < 0.5
    assert dropped.any() and (~dropped).any()
    assert torch.all(id_grad[torch.as_tensor(dropped)] == 0) and torch.all(bias_grad[torch.as_tensor(dropped)] == 0)
    assert torch.all(bias_grad[torch.as_tensor(~dropped)] != 0)  # full softmax: every kept item is a candidate


def test_cold_items_are_ranked_by_their_text_after_training(tiny_bert):
    """Held-out items (never in training) are ranked for matching users well above random and above the untrained
    encoder's content similarity, by a text + id model trained with id dropout."""
    base, tok = tiny_bert
    data = make_synthetic(num_users=200, num_items=120, seed=1, filler_words=6)
    cold = hold_out_items(data.num_items, 0.2, seed=0).tolist()
    split = without_items(leave_one_out(data), cold)
    cfg = ModelConfig(
        encoder="tiny", dim=32, max_history=20, seq_layers=1, temperature=0.1, lora_r=4, seq_dropout=0.1,
        id_embedding=True, id_dropout=0.5,
    )  # fmt: skip
    model, tok = build_model(cfg, data.num_items, base, tok)
    model.mark_trained_items(np.unique(np.concatenate(split.train)))
    tokens = item_tokens(ItemTemplate("{title}").render_all(data.items), tok, cfg, model)
    untrained = compute_text_vectors(model, tokens, desc=None)
    freq = popularity_scores(split.train, data.num_items).float() + 1
    loop = LoopConfig(
        seed=0, epochs=30, batch_size=32, lr=3e-3, encoder_lr=3e-3, cache_refresh_steps=10, max_live_items=32,
        max_grad_norm=0.0, progress=False, checkpoint_every=0,
    )  # fmt: skip
    objective = TrainingObjective(model, tokens, freq).configure(max_live_items=32)
    fit(objective, WindowExamples(all_targets(split.train), 20), loop, make_accelerator(loop))
    model.eval()
    vectors = compute_item_vectors(model, compute_text_vectors(model, tokens, desc=None), data.num_items)
    pop = popularity_scores(split.train, data.num_items)
    report = cold_start_report(
        split.valid + split.test, cold, model=model, item_vectors=vectors, popularity=pop, content_vectors=untrained
    )
    trained, content = report["model"]["cold"]["ndcg@10"], report["content_similarity"]["cold"]["ndcg@10"]
    assert report["model"]["cold"]["n_events"] >= 30
    assert report["popularity"]["cold"]["ndcg@10"] == 0.0  # cold items have no count: they rank last
    random_ndcg = sum(1 / np.log2(r + 2) for r in range(10)) / data.num_items
    assert trained > 3 * random_ndcg, (trained, random_ndcg)
    assert trained > content + 0.03, (trained, content)


def test_train_recipe_reports_e1_cold(tmp_path, tiny_bert_dir):
    """`training.cold_item_fraction` runs E1-cold: warm / cold slices with popularity and content similarity."""
    import json
    import sys
    from pathlib import Path

    from helpers import run_command

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "cold"
    cmd = [sys.executable, str(root / "recipes" / "train.py"), "--config"]
    cmd += [str(root / "recipes" / "configs" / "synthetic_tiny.yaml"), f"model.encoder={tiny_bert_dir}"]
    cmd += [
        "model.id_dropout=0.5",
        "training.epochs=1",
        "training.cold_item_fraction=0.2",
        f"training.output_dir={out}",
    ]
    proc = run_command(cmd, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    cold = metrics["cold_items"]
    assert len(cold) == 24 and metrics["protocol"].startswith("E1-cold")
    report = metrics["results"]["cold_start"]
    assert set(report) == {"model", "popularity", "content_similarity", "content_similarity_last5"}
    n = report["model"]
    assert n["warm"]["n_events"] + n["cold"]["n_events"] == n["all"]["n_events"] == 200
    assert report["popularity"]["cold"]["ndcg@10"] == 0.0
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["slice"].count("cold") == n["cold"]["n_events"]
    assert "| content_similarity | cold |" in proc.stdout


def test_text_loss_adds_a_weighted_text_only_term(tiny_bert):
    from textrec.train.objectives import TextVectorCache

    base, tok = tiny_bert
    data = make_synthetic(num_users=30, num_items=40, seed=0)
    split = leave_one_out(data)
    cfg = ModelConfig(
        encoder="tiny", dim=16, max_history=20, seq_layers=1, id_embedding=True, train_mode="frozen",
        text_loss_weight=1.0,
    )  # fmt: skip
    model, tok = build_model(cfg, data.num_items, base, tok)
    tokens = item_tokens(ItemTemplate("{title}").render_all(data.items), tok, cfg, model)
    objective = TrainingObjective(model, tokens, torch.ones(data.num_items)).configure(full_softmax_items=1000).train()
    cache = TextVectorCache()
    cache.refresh(compute_text_vectors(model, tokens, desc=None), 0)
    batch = WindowExamples(all_targets(split.train), 20).batch(range(16), 0, "cpu")
    losses = {}
    for weight in (0.0, 1.0, 2.0):
        model.text_loss_weight = weight
        torch.manual_seed(0)  # the same dropout masks for every weight
        losses[weight] = float(objective(batch["targets"], batch["inputs"], cache=cache, seed=3).detach())
    term = losses[1.0] - losses[0.0]
    assert term > 0.1  # a cross-entropy over the catalogue: well above 0
    assert losses[2.0] - losses[0.0] == pytest.approx(2 * term, rel=1e-4)
