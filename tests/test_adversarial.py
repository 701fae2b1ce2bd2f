"""Protocol E4: relative FGSM / L2 steps of equal size, the attack and adversarial training moving the same tensors
(history inputs included), the chunked token gradient against plain autograd, and the recipe end to end."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from textrec.config import ModelConfig
from textrec.data.splits import EvalEvent
from textrec.model.build import build_model, item_tokens
from textrec.protocols.adversarial import (
    AdversarialObjective,
    TokenTable,
    attack_delta,
    attack_grid,
    catalogue_loss,
    relative_perturbation,
)
from textrec.train.objectives import TextVectorCache, TrainingObjective

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("attack", ["sign", "l2", "random_sign", "random_l2"])
def test_every_row_moves_by_eps_times_its_own_norm(attack):
    x = torch.randn(5, 16) * torch.tensor([0.1, 1.0, 3.0, 10.0, 50.0])[:, None]  # rows of very different norms
    g = torch.randn(5, 16)
    for eps in (0.01, 0.1, 0.5):
        d = attack_delta(x, g, eps, attack, torch.Generator().manual_seed(0))
        assert torch.allclose(d.norm(dim=-1), eps * x.norm(dim=-1), rtol=1e-5)
    if not attack.startswith("random"):
        cos = torch.nn.functional.cosine_similarity(attack_delta(x, g, 0.1, attack), g, dim=-1)
        assert torch.all(cos > 0.5)  # along the gradient (exactly for l2, sign-wise for sign)
        assert torch.equal(relative_perturbation(x, g, 0.1, "sign").sign(), g.sign())
    with pytest.raises(ValueError, match="attack"):
        attack_delta(x, g, 0.1, "l1")


def _model(num_items=30, encoder=None, tok=None):
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=encoder, train_mode="frozen", id_embedding=True, dim=8, max_history=6, seq_dropout=0.0)
    model, tok = build_model(cfg, num_items, encoder, tok)
    return model, tok, cfg


def _record_history_inputs(model):
    """Wrap model.user_states to record the history vectors and masks it is given."""
    calls, original = [], model.user_states

    def spy(vectors, mask):
        calls.append((vectors.detach().clone(), mask.clone()))
        return original(vectors, mask)

    model.user_states = spy
    return calls


def _assert_history_moved(clean, moved, eps):
    (h0, mask), (h1, _) = clean, moved
    real = h0[mask]
    assert torch.allclose((h1[mask] - real).norm(dim=-1), eps * real.norm(dim=-1), rtol=1e-4)


def test_attack_moves_history_inputs_and_candidates_alike():
    model, _, _ = _model()
    model.eval()
    events = [EvalEvent(u, tuple(range(u, u + 4)), u + 10) for u in range(8)]
    calls = _record_history_inputs(model)
    rows = attack_grid(model, events, None, on="outputs", eps_grid=[0.1], attacks=["sign", "l2"])
    assert [r["attack"] for r in rows] == ["none", "sign", "l2"]
    clean, sign, l2 = calls  # the gradient pass, then one pass per attack
    _assert_history_moved(clean, sign, 0.1)
    _assert_history_moved(clean, l2, 0.1)
    assert all(0 <= r["ndcg@10"] <= 1 for r in rows)


def test_adversarial_training_moves_history_inputs_too():
    model, _, _ = _model()
    model.train()
    objective = AdversarialObjective(model, None, torch.ones(30), eps=0.1, norm="sign", weight=1.0)
    inputs = torch.tensor([[-1, 1, 2, 3, 4, 5], [-1, -1, 7, 8, 9, 10]])
    targets = torch.tensor([[-1, 2, 3, 4, 5, 6], [-1, -1, 8, 9, 10, 11]])
    calls = _record_history_inputs(model)
    loss = objective(targets, inputs)
    clean, moved = calls
    _assert_history_moved(clean, moved, 0.1)
    assert loss.requires_grad and torch.isfinite(loss)
    # lambda 0: exactly the clean full-catalogue loss
    plain = AdversarialObjective(model, None, torch.ones(30), eps=0.1, weight=0.0)
    table = model.item_vectors(torch.arange(30))
    mask = inputs >= 0
    users = model.user_states(table[inputs.clamp_min(0)] * mask.unsqueeze(-1), mask)[targets >= 0]
    assert torch.allclose(plain(targets, inputs), catalogue_loss(model, users, table, targets[targets >= 0]))


def test_sampled_loss_at_lambda_zero_is_the_normal_training_loss():
    model, _, _ = _model()
    model.train()
    freq = torch.arange(1, 31, dtype=torch.float32)
    inputs = torch.tensor([[-1, 1, 2, 3, 4, 5], [-1, -1, 7, 8, 9, 10]])
    targets = torch.tensor([[-1, 2, 3, 4, 5, 6], [-1, -1, 8, 9, 10, 2]])
    plain = TrainingObjective(model, None, freq)(targets, inputs, seed=3)
    ours = AdversarialObjective(model, None, freq, weight=0.0, loss="sampled")(targets, inputs, seed=3)
    assert torch.allclose(plain, ours)
    moved = AdversarialObjective(model, None, freq, weight=1.0, eps=0.1, loss="sampled")(targets, inputs, seed=3)
    assert moved > 2 * plain  # the perturbed term is added, and it is larger than the clean one


def test_lambda_ramps_from_zero():
    model, _, _ = _model()
    objective = AdversarialObjective(model, None, torch.ones(30), weight=2.0, ramp_steps=4)
    seen = []
    for _ in range(6):
        seen.append(objective.current_weight())
        objective.steps += 1
    assert seen == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]


def test_token_gradient_in_chunks_equals_autograd(tiny_bert):
    base, tok = tiny_bert
    model, tok, cfg = _model(12, base, tok)
    model.eval()
    texts = [f"alpha red item{i}" if i % 2 else f"bravo item{i} item{i + 1} blue" for i in range(12)]
    tokens = item_tokens(texts, tok, cfg, model)
    table = TokenTable(model.item_encoder, tokens, chunk=5)  # chunks of 5, 5 and 2 items, each its own width
    weights = torch.randn(12, model.item_encoder.hidden_size)
    leaf = table.pooled().detach().requires_grad_(True)
    grads = table.gradient(torch.autograd.grad((leaf * weights).sum(), leaf)[0])
    ids, mask = tokens.batch(range(12))
    embeds = model.item_encoder.model.get_input_embeddings()(ids).detach().requires_grad_(True)
    (expected,) = torch.autograd.grad((model.item_encoder(None, mask, inputs_embeds=embeds) * weights).sum(), embeds)
    for k, grad in enumerate(grads):
        rows = slice(5 * k, 5 * k + len(grad))
        assert torch.allclose(grad, expected[rows, : grad.shape[1]], atol=1e-5)
        assert torch.all(grad[table.chunks[k][1] == 0] == 0)  # padding: no gradient, never moved
    # the sign step raises the loss more than noise of the same size
    loss = {}
    for attack in ("sign", "random_sign"):
        with torch.no_grad():
            moved = table.pooled(table.deltas(grads, 0.05, attack, torch.Generator().manual_seed(0)))
        loss[attack] = (moved * weights).sum()
    assert loss["sign"] > loss["random_sign"]


def test_token_training_moves_the_text_of_every_item(tiny_bert):
    base, tok = tiny_bert
    model, tok, cfg = _model(12, base, tok)
    tokens = item_tokens([f"alpha item{i}" for i in range(12)], tok, cfg, model)
    cache = TextVectorCache()
    cache.refresh(TokenTable(model.item_encoder, tokens).pooled().detach(), 0)
    objective = AdversarialObjective(model, tokens, torch.ones(12), eps=0.1, on="tokens").train()
    calls = _record_history_inputs(model)
    loss = objective(torch.tensor([[-1, 2, 3, 4]]), torch.tensor([[-1, 1, 2, 3]]), cache=cache)
    clean, moved = calls
    assert torch.isfinite(loss) and not torch.allclose(clean[0][clean[1]], moved[0][moved[1]])


def test_recipe_end_to_end_writes_the_rows(tmp_path, tiny_bert_dir, monkeypatch):
    out = tmp_path / "fgsm"
    argv = [
        "adversarial_fgsm.py",
        "--config",
        str(ROOT / "recipes" / "configs" / "fgsm_synthetic_tiny.yaml"),
        f"model.encoder={tiny_bert_dir}",
        f"adversarial.output_dir={out}",
        "adversarial.seeds=[0,1]",
        "adversarial.train_eps_grid=[0.05,0.2]",
        "training.epochs=3",
        "adversarial.adv_epochs=1",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "recipes" / "adversarial_fgsm.py"), run_name="__main__")
    report = json.loads((out / "report.json").read_text())
    # chosen on the first seed's validation rows only, by the rule it states; every adversarial model warm-started
    first = [r for r in report["selection"] if r["seed"] == 0]
    control = next(r for r in first if r["method"] == "normal_continued")
    grid = [r for r in first if r["method"] == "adversarial"]
    assert {r["train_eps"] for r in grid} == {0.05, 0.2}
    allowed = [r for r in grid if r["valid_clean"] >= 0.97 * control["valid_clean"]]
    best = max(allowed, key=lambda r: r["valid_attacked"]) if allowed else max(grid, key=lambda r: r["valid_clean"])
    assert (report["chosen"]["lambda"], report["chosen"]["train_eps"]) == (best["lambda"], best["train_eps"])
    assert all(r["warm_start"] for r in report["selection"] if r["method"] != "normal")
    rows = report["rows"]
    for key in ("dataset", "method", "attack", "on", "eps", "seed", "ndcg@10", "lambda", "train_eps"):
        assert all(key in r for r in rows), key
    # 1 clean + 2 eps x 4 attacks: on outputs for 3 models and both seeds, on tokens for 2 models and the first seed
    for seed, places in ((0, {"outputs", "tokens"}), (1, {"outputs"})):
        mine = [r for r in rows if r["seed"] == seed]
        assert {r["on"] for r in mine} == places and len(mine) == 9 * (3 + 2 * ("tokens" in places))
    assert all(0 <= r["ndcg@10"] <= 1 for r in rows)
    assert {b["attack"] for b in report["bootstrap"]} == {"none", "sign"}
    assert (out / "adversarial" / "config.json").is_file()


def test_recipe_reuses_a_saved_normal_model(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """`adversarial.normal_from` loads a finished model instead of training one: the loaded normal model scores the
    test split exactly as the model it was saved from, and a folder count that does not match the seeds is refused."""
    common = [
        "adversarial_fgsm.py",
        "--config",
        str(ROOT / "recipes" / "configs" / "fgsm_synthetic_tiny.yaml"),
        f"model.encoder={tiny_bert_dir}",
        "adversarial.train_eps_grid=[0.05]",
        "adversarial.adv_epochs=1",
        "adversarial.attack_on=[outputs]",
        "adversarial.control=false",
    ]
    reports = []
    for name, extra in (("first", []), ("again", [f"adversarial.normal_from=[{tmp_path / 'first' / 'normal'}]"])):
        monkeypatch.setattr(sys, "argv", common + [f"adversarial.output_dir={tmp_path / name}", *extra])
        runpy.run_path(str(ROOT / "recipes" / "adversarial_fgsm.py"), run_name="__main__")
        reports.append(json.loads((tmp_path / name / "report.json").read_text()))

    def normal_rows(report):
        return [(r["attack"], r["eps"], r["ndcg@10"]) for r in report["rows"] if r["method"] == "normal"]

    assert normal_rows(reports[1]) == normal_rows(reports[0]) and normal_rows(reports[0])
    assert "loaded_from" in reports[1]["costs"][0] and "loaded_from" not in reports[0]["costs"][0]
    bad = common + ["adversarial.seeds=[0,1]", f"adversarial.normal_from=[{tmp_path / 'first' / 'normal'}]"]
    monkeypatch.setattr(sys, "argv", bad)
    with pytest.raises(SystemExit) as stop:  # a config error: one line naming the field, exit status 2
        runpy.run_path(str(ROOT / "recipes" / "adversarial_fgsm.py"), run_name="__main__")
    assert stop.value.code == 2 and "adversarial.normal_from: one folder per seed" in capsys.readouterr().err
