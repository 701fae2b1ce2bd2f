"""The one training loop: resume after a kill at any point gives the same run, checkpoints hold only what trains and
never unpickle, a changed config is refused, and the bad options are refused."""

import copy
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file

import textrec.train.loop as engine
import textrec.train.validating as validating
from textrec.config import ModelConfig
from textrec.data.features import all_targets, epoch_batches
from textrec.data.splits import leave_one_out
from textrec.data.synthetic import make_synthetic
from textrec.data.text import ItemTemplate
from textrec.model.build import build_model, item_tokens
from textrec.train.loop import LoopConfig, Validation, WindowExamples, fit, make_accelerator, trainable_state
from textrec.train.objectives import TrainingObjective

DATA = make_synthetic(num_users=80, num_items=40, seed=4)
SPLIT = leave_one_out(DATA)
RUN_CONFIG = {"data": {"seed": 4}, "training": {"epochs": 3}}


def _setup(tiny_bert):
    base, tok = tiny_bert
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="tiny", dim=16, max_history=10, seq_layers=1, lora_r=4, temperature=0.1, seq_dropout=0.1)
    model, tok = build_model(cfg, DATA.num_items, copy.deepcopy(base), tok)
    tokens = item_tokens(ItemTemplate("{title}").render_all(DATA.items), tok, cfg, model)
    objective = TrainingObjective(model, tokens, torch.ones(DATA.num_items)).configure(max_live_items=8)
    return objective, WindowExamples(all_targets(SPLIT.train), 10), Validation(SPLIT.valid, DATA.num_items, tokens)


def _loop(**overrides):
    values = dict(
        seed=0, epochs=3, batch_size=16, patience=5, checkpoint_every=2, cache_refresh_steps=3, progress=False
    )
    return LoopConfig(**{**values, **overrides})


def _run(tiny_bert, ckpt, **overrides):
    objective, examples, validation = _setup(tiny_bert)
    loop = _loop(**overrides)
    result = fit(
        objective,
        examples,
        loop,
        make_accelerator(loop),
        validation=validation,
        checkpoint_dir=ckpt,
        run_config=RUN_CONFIG,
    )
    return trainable_state(objective.model), result


def _same_run(a, b):
    (weights_a, result_a), (weights_b, result_b) = a, b
    assert set(weights_a) == set(weights_b)
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    assert result_a.best_valid_ndcg == result_b.best_valid_ndcg
    assert result_a.steps == result_b.steps and result_a.examples == result_b.examples
    strip = [[(p["step"], p.get("valid_ndcg@10"), p["loss"]) for p in r.curve] for r in (result_a, result_b)]
    assert strip[0] == strip[1]


def _steps_per_epoch():
    return len(epoch_batches(len(WindowExamples(all_targets(SPLIT.train), 10)), 16, 0, 0))


@pytest.fixture(scope="module")
def unbroken(_tiny_bert, tmp_path_factory):
    return _run(_tiny_bert, tmp_path_factory.mktemp("unbroken") / "ckpt")


def _kill_on_call(monkeypatch, target, name, call):
    """Make `target.name` raise KeyboardInterrupt (a kill) on its `call`-th call."""
    real, count = getattr(target, name), {"n": 0}

    def dying(*args, **kwargs):
        count["n"] += 1
        if count["n"] == call:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, dying)


def test_resume_after_a_kill_mid_epoch_is_bit_identical(tiny_bert, tmp_path, monkeypatch, unbroken):
    ckpt = tmp_path / "ckpt"
    with monkeypatch.context() as m:
        _kill_on_call(m, WindowExamples, "batch", _steps_per_epoch() + 4)  # in the second epoch
        with pytest.raises(KeyboardInterrupt):
            _run(tiny_bert, ckpt)
    assert list(ckpt.glob("step_*"))
    _same_run(unbroken, _run(tiny_bert, ckpt))


def test_resume_after_a_kill_during_validation_after_an_end_of_epoch_checkpoint(tiny_bert, tmp_path, monkeypatch):
    per_epoch = _steps_per_epoch()
    reference = _run(tiny_bert, tmp_path / "reference", checkpoint_every=per_epoch)
    ckpt = tmp_path / "ckpt"
    with monkeypatch.context() as m:
        _kill_on_call(m, validating, "evaluate", 2)  # the second epoch's validation; its last step is checkpointed
        with pytest.raises(KeyboardInterrupt):
            _run(tiny_bert, ckpt, checkpoint_every=per_epoch)
    assert (ckpt / f"step_{2 * per_epoch}").is_dir()
    _same_run(reference, _run(tiny_bert, ckpt, checkpoint_every=per_epoch))


def test_rerunning_a_finished_run_returns_its_results(tiny_bert, tmp_path, unbroken):
    ckpt = tmp_path / "ckpt"
    first = _run(tiny_bert, ckpt)
    _same_run(unbroken, first)
    started = len(list(ckpt.glob("step_*")))
    again = _run(tiny_bert, ckpt)  # after the last checkpoint: nothing left to train
    _same_run(first, again)
    assert again[1].stopped == first[1].stopped and len(list(ckpt.glob("step_*"))) == started


def test_resume_refuses_another_config_naming_the_fields(tiny_bert, tmp_path):
    ckpt = tmp_path / "ckpt"
    _run(tiny_bert, ckpt, epochs=1)
    objective, examples, validation = _setup(tiny_bert)
    loop = _loop(epochs=1)
    with pytest.raises(ValueError, match="differing fields: data.seed, training.lr"):
        fit(
            objective,
            examples,
            loop,
            make_accelerator(loop),
            validation=validation,
            checkpoint_dir=ckpt,
            run_config={"data": {"seed": 5}, "training": {"epochs": 3, "lr": 1}},
        )
    _run(tiny_bert, ckpt, epochs=1, resume="never")  # starts afresh instead
    assert all(int(p.name.split("_")[1]) > 0 for p in ckpt.glob("step_*"))


class _Planted:
    """Unpickling this creates the marker file: proof that a checkpoint load ran code from a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_a_checkpoint_is_never_executed(tiny_bert, tmp_path):
    ckpt = tmp_path / "ckpt"
    _run(tiny_bert, ckpt, epochs=1)
    marker = tmp_path / "pwned"
    for folder in ckpt.glob("step_*"):
        for name in ("state.pt", "optimizer.pt", "scheduler.bin", "random_states_0.pkl", "pytorch_model.bin"):
            (folder / name).write_bytes(pickle.dumps(_Planted(marker)))
    _run(tiny_bert, ckpt, epochs=2)  # resumes from that folder
    assert not marker.exists()


def test_checkpoints_hold_only_trained_weights(tiny_bert, tmp_path):
    ckpt = tmp_path / "ckpt"
    weights, _ = _run(tiny_bert, ckpt, epochs=1)
    folder = sorted(ckpt.glob("step_*"))[-1]
    saved = load_file(str(folder / "trainable.safetensors"))
    assert set(saved) == set(weights)
    assert all("lora_" in k for k in saved if "item_encoder" in k)  # no frozen base weight
    trainable_bytes = sum(t.numel() * t.element_size() for t in weights.values())
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert files["trainable.safetensors"] < trainable_bytes + 16_384
    # trainable + best + optimizer (2 moments) + the item text-vector cache + small JSON, nothing else
    cache_bytes = DATA.num_items * 32 * 4
    assert sum(files.values()) < 4 * trainable_bytes + cache_bytes + 64_000, files
    assert not [p for p in folder.iterdir() if p.suffix in (".pt", ".bin", ".pkl")]


def test_mixed_precision_must_match_the_accelerator(tiny_bert):
    objective, examples, _ = _setup(tiny_bert)
    with pytest.raises(ValueError, match="mixed_precision"):
        fit(objective, examples, _loop(mixed_precision="bf16"), make_accelerator(_loop()))


def test_loop_config_rejects_bad_values():
    with pytest.raises(ValueError, match="training.lr"):
        LoopConfig(lr=-0.1)
    with pytest.raises(ValueError, match="training.lr"):
        LoopConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="training.scheduler"):
        LoopConfig(scheduler="step")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_model_and_batches_live_on_the_gpu(tiny_bert, tmp_path):
    objective, examples, validation = _setup(tiny_bert)
    seen = []
    real = examples.batch

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out["targets"].device.type)
        return out

    examples.batch = spy
    loop = _loop(epochs=1)
    fit(objective, examples, loop, make_accelerator(loop), validation=validation, checkpoint_dir=tmp_path / "c")
    assert set(seen) == {"cuda"}
    assert all(p.device.type == "cuda" for p in objective.model.parameters())
    assert os.environ.get("CUDA_VISIBLE_DEVICES", "0") != ""


def test_a_frozen_encoder_encodes_another_validation_catalogue_once(tiny_bert, monkeypatch):
    """Validation on a catalogue other than the training one (E3's target domain): a frozen encoder's vectors of it
    are computed at the first validation and reused, not recomputed every epoch; a trained (LoRA) encoder's are."""
    base, tok = tiny_bert
    calls = []
    real = validating.compute_text_vectors

    def counting(model, tokens, *args, **kwargs):
        calls.append(tokens)
        return real(model, tokens, *args, **kwargs)

    monkeypatch.setattr(validating, "compute_text_vectors", counting)
    for mode, expected in (("frozen", 1), ("lora", 3)):
        torch.manual_seed(0)
        cfg = ModelConfig(encoder="tiny", dim=16, max_history=10, seq_layers=1, lora_r=4, train_mode=mode)
        model, _ = build_model(cfg, DATA.num_items, copy.deepcopy(base), tok)
        tokens = item_tokens(ItemTemplate("{title}").render_all(DATA.items), tok, cfg, model)
        other = item_tokens(ItemTemplate("{title}").render_all(DATA.items), tok, cfg, model)  # not the same object
        objective = TrainingObjective(model, tokens, torch.ones(DATA.num_items)).configure(max_live_items=8)
        loop = _loop(patience=10, cache_refresh_steps=1000)
        calls.clear()
        fit(
            objective,
            WindowExamples(all_targets(SPLIT.train), 10),
            loop,
            make_accelerator(loop),
            validation=Validation(SPLIT.valid, DATA.num_items, other),
        )
        assert sum(c is other for c in calls) == expected, mode


def _warmup_run(tiny_bert, monkeypatch, scores, **overrides):
    """A run whose validations score `scores` in turn; returns (final weights, restores, improvement snapshots)."""
    objective, examples, validation = _setup(tiny_bert)
    values = iter(scores)
    monkeypatch.setattr(validating, "evaluate", lambda *args, **kwargs: {"ndcg@10": next(values)})
    snapshots, restores = [], []
    real_state, real_load = validating.trainable_state, validating.load_trainable_state

    def snapshot(model):
        snapshots.append({k: v.clone() for k, v in real_state(model).items()})
        return real_state(model)

    def restore(model, weights, what):
        restores.append((what, {k: v.clone() for k, v in weights.items()}))
        real_load(model, weights, what)

    monkeypatch.setattr(validating, "trainable_state", snapshot)
    for module in (engine, validating):  # the warm-up's restore (validating) and the final one (the loop)
        monkeypatch.setattr(module, "load_trainable_state", restore)
    loop = _loop(epochs=5, encoder_warmup_epochs=5, patience=5, **overrides)
    result = fit(objective, examples, loop, make_accelerator(loop), validation=validation)
    return real_state(objective.model), restores, snapshots, result


def test_warmup_patience_ends_a_stalled_warmup_and_the_encoder_joins_from_its_best_weights(tiny_bert, monkeypatch):
    scores = [0.1, 0.3, 0.2, 0.4, 0.5]  # the warm-up stalls at epoch 3; the adapter then improves twice
    weights, restores, snapshots, result = _warmup_run(tiny_bert, monkeypatch, scores, encoder_warmup_patience=1)
    assert restores[0][0] == "best warm-up weights"
    epoch2 = snapshots[1]
    assert all(torch.equal(restores[0][1][k], epoch2[k]) for k in epoch2)  # joined from epoch 2, not epoch 3
    lora_b = [k for k in weights if "lora_B" in k]
    assert lora_b and all(not epoch2[k].any() for k in lora_b)  # the warm-up never moved the adapter
    assert any(weights[k].any() for k in lora_b)  # after the join it trained
    assert result.best_valid_ndcg == 0.5 and result.epochs == 5 and result.encoder_joined == 3

    # without the patience the warm-up runs its 5 epochs: the encoder never joins in a 5-epoch run
    weights, restores, _, result = _warmup_run(tiny_bert, monkeypatch, scores)
    assert not any(what == "best warm-up weights" for what, _ in restores) and result.encoder_joined is None
    assert all(not weights[k].any() for k in lora_b)


def test_warmup_patience_needs_a_warmup():
    with pytest.raises(ValueError, match="encoder_warmup_patience"):
        LoopConfig(encoder_warmup_patience=2)
    with pytest.raises(ValueError, match="encoder_warmup_patience"):
        LoopConfig(encoder_warmup_patience=-1, encoder_warmup_epochs=3, epochs=5)
    with pytest.raises(ValueError, match="eval_every_steps"):
        LoopConfig(encoder_warmup_patience=2, encoder_warmup_epochs=3, epochs=5, eval_every_steps=10)


def test_a_launcher_precision_that_differs_from_the_config_is_refused(monkeypatch):
    from textrec.train.setup import check_launcher_precision

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # accelerate launch --mixed_precision bf16
    with pytest.raises(ValueError, match="set training.mixed_precision=bf16"):
        make_accelerator(LoopConfig())  # refused before any Accelerator is made
    check_launcher_precision(LoopConfig(mixed_precision="bf16"))  # the same choice: accepted
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # the launcher's default leaves the config's choice
    check_launcher_precision(LoopConfig(mixed_precision="bf16"))
