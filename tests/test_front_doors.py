"""Front doors a new user meets: shipped config names in recipes, no progress bar per request, ignored caches."""

import json
import subprocess
import sys
from pathlib import Path

from transformers import AutoTokenizer

from textrec.data.text import tokenize_texts

ROOT = Path(__file__).resolve().parents[1]


def test_a_recipe_takes_a_shipped_config_by_name(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "recipes/train.py", "--config", "synthetic_tiny", "training.epochs=1",
           f"training.output_dir={out}", "training.progress=false", "data.synthetic_users=40"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["config"]["data"]["format"] == "synthetic"
    missing = subprocess.run(
        [sys.executable, "recipes/train.py", "--config", "no_such_config"], cwd=ROOT, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "nor a shipped config" in missing.stderr


def test_tokenizing_a_request_sized_batch_shows_no_progress_bar(capfd, tiny_bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    capfd.readouterr()
    ds = tokenize_texts(["dragons and pirates"] * 20, tokenizer, 16)
    assert len(ds["input_ids"]) == 20 and ds["input_ids"][0] == ds["input_ids"][19]
    assert "tokenizing" not in capfd.readouterr().err


def test_the_text_cache_folder_of_the_examples_is_ignored():
    assert ".textrec_cache/" in (ROOT / ".gitignore").read_text().split()


def test_examples_and_the_readme_import_only_the_public_names():
    """Public names in `textrec` cover what the quickstart and the README use: nothing reaches into submodules."""
    import ast
    import re

    import textrec

    readme = (ROOT / "README.md").read_text()
    sources = [(ROOT / "examples" / "quickstart.py").read_text(), *re.findall(r"```python\n(.*?)```", readme, re.S)]
    imported, deep = set(), []
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textrec"):
                (imported.update(a.name for a in node.names) if node.module == "textrec" else deep.append(node.module))
            elif isinstance(node, ast.Import):
                deep += [a.name for a in node.names if a.name.startswith("textrec.")]
    assert deep == []
    assert imported and imported <= set(textrec.__all__), imported - set(textrec.__all__)
