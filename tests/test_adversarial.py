"""FGSM / L2 perturbations: norm, direction, the loss rising (checked by finite differences), eps = 0, control."""

import pytest
import torch
from helpers import run_command

from textrec.adversarial import (
    attack_vectors,
    perturbation,
    random_perturbation,
    ranking_loss,
    token_embedding_delta,
)
from textrec.build import build_model
from textrec.config import ModelConfig


def test_perturbation_norm_and_direction():
    g = torch.randn(4, 8)
    d = perturbation(g, 0.3, "sign")
    assert torch.allclose(d.abs(), torch.full_like(d, 0.3)) and torch.equal(d.sign(), g.sign())
    d = perturbation(g, 0.3, "l2")
    assert torch.allclose(d.norm(dim=-1), torch.full((4,), 0.3))
    assert torch.allclose(torch.nn.functional.cosine_similarity(d, g, dim=-1), torch.ones(4))
    r = random_perturbation(g, 0.3, "l2", torch.Generator().manual_seed(0))
    assert torch.allclose(r.norm(dim=-1), torch.full((4,), 0.3))
    with pytest.raises(ValueError, match="norm"):
        perturbation(g, 0.1, "l1")


@pytest.fixture
def id_model():
    torch.manual_seed(0)
    model, _ = build_model(ModelConfig(encoder=None, id_embedding=True, dim=8, max_history=5), 30)
    return model.eval()


@pytest.mark.parametrize("norm", ["sign", "l2"])
def test_attack_raises_the_loss_as_the_gradient_predicts(id_model, norm):
    users, items = torch.randn(6, 8), torch.randn(30, 8)
    targets = torch.randint(0, 30, (6,))
    clean = ranking_loss(id_model, users, items, targets)
    u0, i0 = attack_vectors(id_model, users, items, targets, 0.0, norm)
    assert ranking_loss(id_model, u0, i0, targets).item() == clean.item()  # eps = 0: the clean loss exactly
    eps = 1e-3
    u1, i1 = attack_vectors(id_model, users, items, targets, eps, norm)
    attacked = ranking_loss(id_model, u1, i1, targets)
    # First-order prediction: L(x + d) - L(x) ~ <grad, d>
    u, i = users.clone().requires_grad_(), items.clone().requires_grad_()
    gu, gi = torch.autograd.grad(ranking_loss(id_model, u, i, targets), [u, i])
    predicted = (gu * (u1 - users)).sum() + (gi * (i1 - items)).sum()
    assert attacked > clean
    assert (attacked - clean).item() == pytest.approx(predicted.item(), rel=0.05)
    rand_u, rand_i = attack_vectors(
        id_model, users, items, targets, eps, norm, random=True, generator=torch.Generator().manual_seed(1)
    )
    assert ranking_loss(id_model, rand_u, rand_i, targets) < attacked  # noise of the same norm hurts less


def test_token_embedding_attack_on_a_text_encoder(tiny_bert):
    base, tok = tiny_bert
    model, tok = build_model(ModelConfig(encoder="tiny", dim=8, train_mode="frozen"), 4, base, tok)
    model.eval()
    enc = tok(["alpha red item1", "bravo item2 item3"], padding=True, return_tensors="pt")
    direction = torch.randn(model.item_encoder.hidden_size)

    def loss_fn(pooled):
        return (pooled @ direction).sum()

    delta = token_embedding_delta(model.item_encoder, enc["input_ids"], enc["attention_mask"], loss_fn, 0.05)
    assert delta.shape[:2] == enc["input_ids"].shape
    assert torch.all(delta[enc["attention_mask"] == 0] == 0)  # padding untouched
    embeds = model.item_encoder.model.get_input_embeddings()(enc["input_ids"])
    with torch.no_grad():
        clean = loss_fn(model.item_encoder(None, enc["attention_mask"], inputs_embeds=embeds))
        attacked = loss_fn(model.item_encoder(None, enc["attention_mask"], inputs_embeds=embeds + delta))
        same = loss_fn(model.item_encoder(enc["input_ids"], enc["attention_mask"]))
    assert torch.allclose(clean, same, atol=1e-5) and attacked > clean


def _run_fgsm_recipe(out, tiny_bert_dir, launcher=None, *extra):
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = (launcher or [sys.executable]) + [
        str(root / "recipes" / "adversarial_fgsm.py"),
        "--config",
        str(root / "recipes" / "configs" / "fgsm_synthetic_tiny.yaml"),
        f"model.encoder={tiny_bert_dir}",
        f"adversarial.output_dir={out}",
        *extra,
    ]
    proc = run_command(cmd, cwd=root, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    import json

    return json.loads((out / "report.json").read_text())


def test_fgsm_recipe_control_and_both_models(tmp_path, tiny_bert_dir):
    report = _run_fgsm_recipe(tmp_path, tiny_bert_dir, None, "adversarial.train_eps_grid=[0.01,0.05]")
    # the training eps is chosen on validation: every candidate trained, the best validation score kept
    chosen = report["train_eps_validation"]
    assert set(chosen) == {"0.01", "0.05"}
    assert report["costs"]["adversarial"]["best_valid_ndcg@10"] == max(chosen.values())
    assert str(report["costs"]["adversarial"]["train_eps"]) == max(chosen, key=chosen.get)
    for name in ("normal", "adversarial"):
        rows = report["models"][name]
        assert 0 < rows["clean"] <= 1
        grid = {(r["attack"], r["eps_rel"]): r["ndcg@10"] for r in rows["attacks"]}
        assert len(grid) == 16
    normal = {(r["attack"], r["eps_rel"]): r["ndcg@10"] for r in report["models"]["normal"]["attacks"]}
    clean = report["models"]["normal"]["clean"]
    for eps in (0.05, 0.1):  # the same-norm noise control stays closer to clean than the attack
        for norm in ("sign", "l2"):
            assert abs(clean - normal[(f"random_{norm}", eps)]) < clean - normal[(norm, eps)], (norm, eps)
    assert (tmp_path / "adversarial" / "adapter_model.safetensors").is_file()


def test_fgsm_recipe_under_two_processes(tmp_path, tiny_bert_dir):
    from helpers import LAUNCH_TWO_PROCESSES

    report = _run_fgsm_recipe(
        tmp_path, tiny_bert_dir, LAUNCH_TWO_PROCESSES, "adversarial.epochs=2", "adversarial.eps_grid=[0.1]"
    )
    assert set(report["models"]) == {"normal", "adversarial"}
