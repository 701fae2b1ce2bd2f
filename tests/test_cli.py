"""The downstream front doors: Recommender(device=...), `textrec recommend --input` batches, `textrec export`,
`textrec configs` and `textrec run`."""

import copy
import json
import os
import shutil
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import run_command

from textrec.serve.recommender import Recommender

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("adversarial_fgsm", "domain_transfer", "incremental_lora", "train")


def _load(trained_model_dir, _tiny_bert, tmp_path, **kwargs):
    out, items_path, _ = trained_model_dir
    return Recommender.from_pretrained(
        out, items_path, base=copy.deepcopy(_tiny_bert[0]), cache_dir=tmp_path, show_progress=False, **kwargs
    )


# ----- Recommender(device=...) -----
def test_device_cpu_answers_in_plain_python(trained_model_dir, _tiny_bert, tmp_path):
    rec = _load(trained_model_dir, _tiny_bert, tmp_path, device="cpu")
    assert rec.device == torch.device("cpu") and rec.item_vectors.device.type == "cpu"
    assert rec.model.device.type == "cpu" and next(rec.towers.parameters()).device.type == "cpu"
    recs = rec.recommend(["i0", "i6"], k=3)
    assert all(type(i) is str and type(s) is float for i, s in recs)
    batch = rec.recommend_batch([["i0"], "alpha red item3"], k=2)[1]
    assert [i for i, _ in batch] == [i for i, _ in rec.recommend("alpha red item3", k=2)]
    default = _load(trained_model_dir, _tiny_bert, tmp_path)  # None: cuda when available, else cpu
    assert default.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("device", ["gpu", "cuda:7" if torch.cuda.is_available() else "cuda", 3.5])
def test_bad_device_is_a_clear_error(trained_model_dir, _tiny_bert, tmp_path, device):
    with pytest.raises(ValueError, match="^device: "):
        _load(trained_model_dir, _tiny_bert, tmp_path, device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_cuda_matches_cpu(trained_model_dir, _tiny_bert, tmp_path):
    cpu = _load(trained_model_dir, _tiny_bert, tmp_path / "cpu", device="cpu")
    gpu = _load(trained_model_dir, _tiny_bert, tmp_path / "gpu", device=torch.device("cuda"))
    assert gpu.item_vectors.device.type == "cuda" and next(gpu.model.parameters()).device.type == "cuda"
    cached = _load(trained_model_dir, _tiny_bert, tmp_path / "gpu", device="cuda")  # the index read from the cache
    assert cached.item_vectors.device.type == "cuda"
    histories = [["i0", "i6", "i12"], "alpha red item3"]
    for a, b in zip(cpu.recommend_batch(histories, k=5), gpu.recommend_batch(histories, k=5)):
        assert [i for i, _ in a] == [i for i, _ in b] and all(type(s) is float for _, s in b)
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-3)
    assert gpu.user_vectors(histories).device.type == "cpu"
    assert [i for i, _ in gpu.similar_items("i0", k=3)] == [i for i, _ in cpu.similar_items("i0", k=3)]
    gpu.add_items([{"item_id": "new", "title": "alpha red item390", "topic": "alpha"}])
    assert gpu.item_vectors.device.type == "cuda" and len(gpu) == len(cpu) + 1


# ----- textrec recommend --input / --output -----
@pytest.fixture(scope="module")
def cli_model(trained_model_dir, tiny_bert_dir, tmp_path_factory):
    """The trained tiny model folder, its base encoder pointed at the tiny BERT saved on disk (the CLI cannot be
    handed an in-memory base), and the CLI arguments that load it."""
    out, items_path, data = trained_model_dir
    model_dir = tmp_path_factory.mktemp("cli") / "model"
    shutil.copytree(out, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["model"]["encoder"] = config["base_encoder"]["name"] = tiny_bert_dir
    (model_dir / "config.json").write_text(json.dumps(config))
    common = ["--model", str(model_dir), "--items", str(items_path), "--cache-dir", str(model_dir.parent / "cache")]
    return model_dir, items_path, data, common


def _jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_recommend_jsonl_batch(cli_model, tmp_path, capsys):
    from textrec.serve import cli

    model_dir, items_path, data, common = cli_model
    requests = [
        {"user_id": "u1", "history": ["i0", "i6", "i12"]},
        {"user_id": 2, "history": ["i1"], "k": 2},
        "",  # blank lines are skipped
        {"id": "free", "text": "alpha red item3", "k": 4},
        {"history": ["i5", "i7"]},
        {"user_id": "u5", "id": 9, "history": ["i3", "i9"], "k": 1},
    ]
    source = _jsonl(tmp_path / "histories.jsonl", requests)
    target = tmp_path / "out" / "recs.jsonl"
    code = cli.main(["recommend", *common, "--input", str(source), "--output", str(target), "--k", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "recommending" in captured.err and "5 recommendation lists written" in captured.out  # the progress bar
    answers = [json.loads(line) for line in target.read_text().splitlines()]
    asked = [r for r in requests if r]
    assert len(answers) == 5
    rec = Recommender.from_pretrained(model_dir, items_path, cache_dir=tmp_path / "c", show_progress=False)
    for request, answer in zip(asked, answers):
        assert {k: v for k, v in answer.items() if k != "items"} == {
            k: request[k] for k in ("user_id", "id") if k in request
        }
        history = request.get("history", request.get("text"))
        expected = rec.recommend(history, k=request.get("k", 3))
        assert [a["item_id"] for a in answer["items"]] == [i for i, _ in expected]
        assert [a["score"] for a in answer["items"]] == pytest.approx([s for _, s in expected], abs=1e-4)
    # batched: requests of different k share a recommend_batch call; the answers are the same
    again = tmp_path / "batched.jsonl"
    args = ["recommend", *common, "--input", str(source), "--output", str(again), "--k", "3", "--batch-size", "2"]
    assert cli.main(args) == 0
    assert [[i["item_id"] for i in json.loads(line)["items"]] for line in again.read_text().splitlines()] == [
        [i["item_id"] for i in a["items"]] for a in answers
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"history": ["i0"]', "not valid JSON"),
        ('["i0"]', "expected a JSON object"),
        ('{"history": ["i0"], "text": "x"}', "exactly one of 'history'"),
        ('{"user": "u1", "history": ["i0"]}', "unknown field 'user'"),
        ('{"history": []}', "'history' must be a non-empty list"),
        ('{"history": ["i0", 5]}', "item ids are strings, got 5"),
        ('{"text": "  "}', "'text' must be a non-empty string"),
        ('{"history": ["i0"], "k": 0}', "'k' must be a positive integer"),
        ('{"history": ["i0", "nope"]}', "unknown item ids: ['nope']"),
        ('{"history": ["i0"], "k": 100000}', "larger than the catalogue"),
    ],
)
def test_recommend_jsonl_bad_line_is_one_line_error(cli_model, tmp_path, capsys, line, message):
    from textrec.serve import cli

    source = tmp_path / "in.jsonl"
    source.write_text('{"history": ["i0"]}\n\n' + line + "\n")
    target = tmp_path / "recs.jsonl"
    assert cli.main(["recommend", *cli_model[3], "--input", str(source), "--output", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"textrec recommend: {source}, line 3: " in err and message in err and "Traceback" not in err
    assert not target.exists()  # nothing half-written


def test_recommend_output_goes_with_input(cli_model, tmp_path, capsys):
    from textrec.serve import cli

    assert cli.main(["recommend", *cli_model[3], "--history", "i0", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "--input and --output go together" in capsys.readouterr().err


# ----- textrec export -----
def test_export_calls_export_sentence_transformers(monkeypatch, tmp_path, capsys):
    from textrec.serve import cli

    calls = []
    fake = types.ModuleType("textrec.serve.export")
    fake.export_sentence_transformers = lambda *a, **kw: calls.append((a, kw)) or Path(a[1])
    monkeypatch.setitem(sys.modules, "textrec.serve.export", fake)
    out = tmp_path / "st"
    args = ["export", "--format", "sentence-transformers", "--model", "you/model", "--revision", "v1"]
    assert cli.main([*args, "--output", str(out)]) == 0
    assert calls == [(("you/model", str(out)), {"revision": "v1", "token": None})]
    assert f"to {out}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        cli.main(["export", "--format", "onnx", "--model", "m", "--output", str(out)])
    assert err.value.code == 2


# ----- textrec configs / textrec run -----
def test_configs_lists_every_recipe_and_config(capsys):
    from textrec.serve import cli

    assert cli.main(["configs"]) == 0
    out = capsys.readouterr().out
    rows, recipe = {}, None
    for line in out.splitlines()[1:]:
        if not line.strip() or line.startswith("from "):
            continue
        recipe = line[:20].strip() or recipe
        rows[line[20:].strip()] = recipe
    shipped = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))
    assert {c.stem: _recipe_of(c) for c in shipped} == rows
    assert set(rows.values()) == set(RECIPES) and str(ROOT / "recipes") in out


def _recipe_of(config: Path) -> str:
    return config.read_text().splitlines()[0].split("recipes/")[1].split(".py")[0]


def test_configs_cp(tmp_path, capsys):
    from textrec.serve import cli

    assert cli.main(["configs", "cp", "synthetic_tiny", f"{tmp_path}/mine/"]) == 0
    copied = tmp_path / "mine" / "synthetic_tiny.yaml"
    assert copied.read_text() == (ROOT / "recipes" / "configs" / "synthetic_tiny.yaml").read_text()
    assert cli.main(["configs", "cp", "synthetic_tiny.yaml", str(tmp_path / "mine")]) == 2
    assert "already exists: not overwritten" in capsys.readouterr().err
    assert cli.main(["configs", "cp", "train", str(tmp_path / "my_train.py")]) == 0
    assert (tmp_path / "my_train.py").read_text() == (ROOT / "recipes" / "train.py").read_text()
    assert cli.main(["configs", "cp", "nope", str(tmp_path)]) == 2
    assert "neither a shipped config nor a recipe" in capsys.readouterr().err


def test_run_resolves_recipe_config_and_launcher(monkeypatch, tmp_path, capsys):
    from textrec.serve import cli, launch

    ran, launched = [], []
    monkeypatch.setattr(launch, "run_in_process", lambda recipe, args: ran.append((Path(recipe), list(args))))
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: launched.append(cmd) or 0)
    assert cli.main(["run", "train", "--config", "synthetic_tiny", "training.epochs=1", "--model.dim", "16"]) == 0
    config = ROOT / "recipes" / "configs" / "synthetic_tiny.yaml"
    expected = ["--config", str(config), "training.epochs=1", "--model.dim", "16"]
    assert ran == [(ROOT / "recipes" / "train.py", expected)]
    own = tmp_path / "mine.yaml"
    own.write_text(config.read_text())
    assert cli.main(["run", "--num_processes", "2", "--multi_gpu", "incremental_lora", f"--config={own}"]) == 0
    assert launched == [
        [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--num_processes", "2", "--multi_gpu"]
        + [str(ROOT / "recipes" / "incremental_lora.py"), f"--config={own}"]
    ]
    copy_of_recipe = tmp_path / "my_train.py"
    copy_of_recipe.write_text("")
    assert cli.main(["run", str(copy_of_recipe), "--config", "ml100k_minilm.yaml"]) == 0
    assert ran[-1] == (copy_of_recipe, ["--config", str(ROOT / "recipes" / "configs" / "ml100k_minilm.yaml")])
    assert cli.main(["run", "trian", "--config", "synthetic_tiny"]) == 2
    assert "no recipe given (shipped: adversarial_fgsm, domain_transfer" in capsys.readouterr().err
    assert cli.main(["run", "train", "--config", "synthetic_tiyn"]) == 2
    assert "config 'synthetic_tiyn': no such file, nor a shipped config" in capsys.readouterr().err
    assert cli.main(["run"]) == 2 and "usage: textrec run" in capsys.readouterr().err


def test_run_recipe_help_lists_every_field(capsys):
    from textrec.serve import cli

    with pytest.raises(SystemExit) as err:
        cli.main(["run", "train", "--help"])
    assert err.value.code == 0
    out = capsys.readouterr().out
    for section in ("data", "model", "training", "hub"):
        assert f"\n{section}: " in out
    for name in ("data.format", "model.lora_r", "training.encoder_lr", "training.loss", "hub.repo_id"):
        assert f"  {name}: " in out
    assert "LoRA rank" in out  # the help text


def test_run_train_in_process(tmp_path, capsys):
    """A whole tiny run (ID-only, synthetic data) of the shipped train recipe and config, in this process."""
    from textrec.serve import cli

    out = tmp_path / "run"
    args = ["run", "train", "--config", "synthetic_tiny", f"training.output_dir={out}", "training.epochs=1"]
    assert cli.main([*args, "training.progress=false"]) == 0
    assert "| synthetic_tiny training.epochs=1, seed 42 |" in capsys.readouterr().out  # the recipe's summary table
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["results"]["test_mask=True"]["n_events"] == 200 and (out / "model" / "config.json").is_file()
    assert metrics["config"]["training"]["epochs"] == 1 and metrics["config"]["data"]["format"] == "synthetic"


def test_wheel_ships_recipes_and_configs(tmp_path):
    """`pip wheel` of the project holds the recipes and configs as textrec/recipes/, and `textrec configs` finds them
    there once installed (here: the wheel unpacked on PYTHONPATH, outside the checkout)."""
    source = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "textrec", source / "textrec", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "recipes", source / "recipes", ignore=shutil.ignore_patterns("__pycache__"))
    proc = run_command(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("textrec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in RECIPES:
        assert f"textrec/recipes/{recipe}.py" in names
    for config in (ROOT / "recipes" / "configs").glob("*.yaml"):
        assert f"textrec/recipes/configs/{config.name}" in names
    assert not any(n.startswith("recipes/") for n in names)  # no top-level `recipes` package
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    env = {**os.environ, "PYTHONPATH": str(installed)}
    proc = run_command([sys.executable, "-m", "textrec.serve.cli", "configs"], cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"from {installed / 'textrec' / 'recipes'}" in proc.stdout and "synthetic_tiny" in proc.stdout


def test_recommend_jsonl_with_bom_reads_and_bad_utf8_names_the_line(cli_model, tmp_path, capsys):
    from textrec.serve import cli

    source = tmp_path / "in.jsonl"
    source.write_bytes(b'\xef\xbb\xbf{"history": ["i0"]}\n{"history": ["i1"]}\n')
    target = tmp_path / "recs.jsonl"
    assert cli.main(["recommend", *cli_model[3], "--input", str(source), "--output", str(target)]) == 0
    assert len(target.read_text().splitlines()) == 2
    source.write_bytes(b'{"history": ["i0"]}\n{"history": ["\xff"]}\n')
    assert cli.main(["recommend", *cli_model[3], "--input", str(source), "--output", str(tmp_path / "x")]) == 2
    assert f"{source}, line 2: not valid UTF-8" in capsys.readouterr().err
