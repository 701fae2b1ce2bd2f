"""The GPU check runs end to end on the CPU (tiny settings), its placement logic, and the live-catalogue step."""

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from textrec.config import ModelConfig
from textrec.data.features import all_targets
from textrec.data.splits import leave_one_out
from textrec.data.synthetic import make_synthetic
from textrec.data.text import ItemTemplate
from textrec.evaluate.ranking import compute_text_vectors
from textrec.model.build import build_model, item_tokens
from textrec.train.loop import LoopConfig, WindowExamples, fit, make_accelerator
from textrec.train.objectives import TextVectorCache, TrainingObjective
from textrec.train.placement import ForwardDeviceProbe, misplaced_tensors, on_device

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_end_to_end_on_the_cpu_with_tiny_settings(tmp_path):
    out = tmp_path / "out"
    cmd = ["bash", "scripts/gpu_check.sh", "--device", "cpu", "--tiny", "--no-install", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert set(report["parts"]) == {"env", "placement", "throughput", "idonly_epoch", "e1_live", "parity"}
    assert all(p["status"] == "ok" for p in report["parts"].values())
    parts = report["parts"]
    assert parts["placement"]["quickstart"]["tensors_checked"] > 100
    assert parts["placement"]["main_job"]["device"] == "cpu"
    for row in parts["throughput"]["rows"]:
        assert row["flop_per_step"] > 0 and math.isfinite(row["tflops"]) and row["step_ms"] > 0
    assert parts["e1_live"]["placement"]["tensors_checked"] > 10
    assert 0 <= parts["e1_live"]["test_ndcg@10_masked"] <= 1
    assert len(parts["parity"]["fp32"]["valid_per_epoch"]) == len(parts["parity"]["bf16"]["valid_per_epoch"]) == 2
    table = (out / "gpu_check.md").read_text()
    assert "| e1_live | ok |" in table and "| parity | ok |" in table


def test_misplaced_tensors_name_what_is_off_the_device():
    module = nn.Linear(3, 2)
    module.register_buffer("stray", torch.zeros(2, device="meta"))
    optimizer = torch.optim.AdamW(module.parameters())
    module(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    bad, checked = misplaced_tensors(torch.device("cpu"), module, optimizer, {"cache": torch.zeros(1, device="meta")})
    assert bad == ["stray", "cache"]
    assert checked == 2 + 2 + 1 + 4 + 1  # weight, bias, their grads, the buffer, exp_avg(_sq) x 2, the cache
    assert on_device(torch.zeros(1), torch.device("cpu")) and not on_device(torch.zeros(1, device="meta"), "cpu")


def test_the_forward_probe_records_modules_called_off_the_device():
    outer = nn.Sequential(nn.Identity(), nn.Identity())
    with ForwardDeviceProbe(outer, torch.device("cpu")) as probe:
        outer(torch.zeros(2, device="meta"))
    assert probe.misplaced == ["<root> (input on meta)", "0 (input on meta)", "1 (input on meta)"]
    outer(torch.zeros(2, device="meta"))  # hooks are removed on exit
    assert len(probe.misplaced) == 3 and probe.called == {"<root>", "0", "1"}


def _text_objective(tiny_bert, live: bool):
    base, tok = tiny_bert
    data = make_synthetic(num_users=60, num_items=30, seed=3)
    cfg = ModelConfig(encoder="tiny", dim=16, max_history=10, seq_layers=1, lora_r=4, lora_dropout=0.0, seq_dropout=0)
    torch.manual_seed(0)
    model, tok = build_model(cfg, data.num_items, base, tok)
    tokens = item_tokens(ItemTemplate("{title}").render_all(data.items), tok, cfg, model)
    objective = TrainingObjective(model, tokens, torch.ones(data.num_items)).configure(max_live_items=data.num_items)
    objective.live_catalogue = live
    return objective, data, tokens


def test_the_live_catalogue_step_equals_the_cached_one_at_its_first_step_and_trains_through_history(tiny_bert):
    import copy

    cached, _, _ = _text_objective(copy.deepcopy(tiny_bert), False)
    objective, data, tokens = _text_objective(tiny_bert, True)
    cached.model.load_state_dict(objective.model.state_dict())
    split = leave_one_out(data)
    batch = WindowExamples(all_targets(split.train), 10).batch(range(16), 0, "cpu")
    cache = TextVectorCache()
    cache.refresh(compute_text_vectors(objective.model, tokens, desc=None), 0)  # a fresh cache: the same vectors
    losses, grads = [], []
    for obj in (objective, cached):
        obj.train()
        loss = obj(**batch, cache=cache, seed=5)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for n, p in obj.model.named_parameters() if "lora_B" in n]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0
    assert not torch.allclose(grads[0], grads[1])  # live history items carry gradient into LoRA too


def test_fit_checks_placement_and_trains_with_the_live_catalogue(tiny_bert):
    objective, data, tokens = _text_objective(tiny_bert, False)
    split = leave_one_out(data)
    loop = LoopConfig(epochs=2, batch_size=16, live_catalogue=True, check_placement=True, progress=False)
    result = fit(objective, WindowExamples(all_targets(split.train), 10), loop, make_accelerator(loop))
    assert result.placement["device"] == "cpu" and result.placement["modules_called"] > 5
    assert objective.live_catalogue  # the loop turned it on once the encoder trained
    assert result.steps > 0 and math.isfinite(result.curve[-1]["loss"])


def test_the_driver_knows_every_part_the_parts_script_runs():
    import importlib.util

    def load(name):
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    assert list(load("gpu_check").PARTS) == list(load("gpu_parts").PARTS)
