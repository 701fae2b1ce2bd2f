"""Domain transfer recipe (E3) on synthetic topics: zero-shot beats random, adaptation beats zero-shot."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from textrec.evaluation import evaluate_scores
from textrec.recommender import Recommender
from textrec.splits import leave_one_out

ROOT = Path(__file__).resolve().parents[1]


def test_domain_transfer_recipe(tmp_path, tiny_bert_dir):
    cmd = [
        sys.executable,
        str(ROOT / "recipes" / "domain_transfer.py"),
        "--config",
        str(ROOT / "recipes" / "configs" / "transfer_synthetic_tiny.yaml"),
        f"model.encoder={tiny_bert_dir}",
        f"transfer.output_dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    results = report["results"]
    zero_shot = results["zero_shot"]["0"]["ndcg@10"]

    # Random ranking of the same target test events (a fresh random score vector per draw).
    from textrec.config import DataConfig
    from textrec.data import load_data

    data = load_data(DataConfig(format="synthetic", synthetic_users=300, synthetic_items=90))
    target_rows = np.flatnonzero([t not in ("alpha", "bravo", "charlie") for t in data.items["topic"]])
    import importlib.util

    spec = importlib.util.spec_from_file_location("domain_transfer", ROOT / "recipes" / "domain_transfer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    target = module.domain(data, target_rows)
    test = leave_one_out(target).test
    gen = torch.Generator().manual_seed(0)
    random = np.mean(
        [
            evaluate_scores(torch.rand(target.num_items, generator=gen, dtype=torch.float64), test)["ndcg@10"]
            for _ in range(20)
        ]
    )
    assert zero_shot > random + 0.03, (zero_shot, random)
    assert results["adapted"]["1.0"]["ndcg@10"] > zero_shot + 0.1
    assert results["id_only"]["1.0"]["cold_ndcg@10"] == 0.0  # an ID-only model cannot rank unseen items
    assert results["adapted"]["1.0"]["cold_ndcg@10"] > 0.0
    assert results["popularity"]["1.0"]["cold_ndcg@10"] == 0.0  # never seen in training: counted as never popular
    # The chained adapters reload: the source folder and the target adaptation on top of it.
    adapted = json.loads((tmp_path / "target_adapted" / "config.json").read_text())
    assert adapted["parent"] == str(tmp_path / "source")
    items = tmp_path / "target_items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in target.items.to_list()))
    rec = Recommender.from_pretrained(tmp_path / "target_adapted", items, show_progress=False)
    assert len(rec.recommend([target.item_ids[0], target.item_ids[1]], k=5)) == 5
    Recommender.from_pretrained(tmp_path / "source", items, show_progress=False)  # zero-shot use, by text
