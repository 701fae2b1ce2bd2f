"""Domain transfer (E3): the library pieces against plain versions, and the recipe on synthetic topics (zero-shot
beats random and untrained content similarity, adaptation beats zero-shot, the cold slice behaves)."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from textrec.config import DataConfig, ModelConfig
from textrec.data import load_data
from textrec.data.splits import leave_one_out
from textrec.evaluate.metrics import metrics_from_ranks
from textrec.evaluate.ranking import evaluate_content_similarity, evaluate_scores
from textrec.protocols.reports import transfer_markdown, transfer_plot
from textrec.protocols.transfer import (
    content_ranks,
    domain,
    fraction_users,
    popularity_ranks,
    retarget,
    slice_rows,
    split_domains,
)
from textrec.serve.recommender import Recommender

ROOT = Path(__file__).resolve().parents[1]
SOURCE_TOPICS = ("alpha", "bravo", "charlie")


@pytest.fixture(scope="module")
def data():
    return load_data(DataConfig(format="synthetic", synthetic_users=300, synthetic_items=90))


def test_domain_equals_row_by_row_filter(data):
    rows = np.flatnonzero([t not in SOURCE_TOPICS for t in data.items["topic"]])
    target = domain(data, rows[::-1])  # any order in, catalogue order out
    keep = set(data.items.select(rows.tolist())["item_id"])
    plain = [i for i, item in enumerate(data.interactions["item_id"]) if item in keep]
    assert target.interactions.to_list() == data.interactions.select(plain).to_list()
    assert target.item_ids == [data.item_ids[r] for r in rows]
    source, target2 = split_domains(data, "topic", list(SOURCE_TOPICS))
    assert set(source.item_ids).isdisjoint(target2.item_ids)
    assert len(source.interactions) + len(target2.interactions) == len(data.interactions)
    assert target2.item_ids == target.item_ids
    with pytest.raises(ValueError, match="domain_field"):
        split_domains(data, "genre", ["x"])
    with pytest.raises(ValueError, match="empty"):
        split_domains(data, "topic", ["nothing"])


def test_reference_ranks_equal_the_plain_evaluation(data):
    split = leave_one_out(data)
    vectors = torch.randn(data.num_items, 16, generator=torch.Generator().manual_seed(0))
    for last in (None, 5):
        ranks = content_ranks(vectors, split.test, last=last, batch_size=37)
        plain = evaluate_content_similarity(vectors, split.test, last=last)
        assert metrics_from_ranks(ranks) == pytest.approx(plain)
    counts = torch.as_tensor(np.bincount(np.concatenate(split.train), minlength=data.num_items))
    assert metrics_from_ranks(popularity_ranks(counts, split.test)) == pytest.approx(
        evaluate_scores(counts.double(), split.test)
    )


def test_fractions_nest_and_slices_split_events(data):
    split = leave_one_out(data)
    small, large = fraction_users(split.train, 0.05), fraction_users(split.train, 0.2)
    assert set(small) < set(large) and len(fraction_users(split.train, 1.0)) == sum(len(s) >= 2 for s in split.train)
    ranks = np.arange(len(split.test)) % 30
    cold = sorted({e.target for e in split.test[:10]})
    rows = {r["slice"]: r for r in slice_rows(ranks, split.test, cold, method="m", fraction=1.0, seed=0)}
    assert rows["warm"]["n_events"] + rows["cold"]["n_events"] == rows["all"]["n_events"] == len(split.test)


def test_retarget_only_text_only_models(tiny_bert):
    from textrec.model.build import build_model

    base, tok = tiny_bert
    cfg = ModelConfig(encoder="tiny", dim=32, max_history=10, seq_layers=1, user_content=3)
    model, _ = build_model(cfg, 7, copy.deepcopy(base), tok)
    assert retarget(model, 11).num_items == 11 and model.rankable_items(11) is None
    with_ids, _ = build_model(ModelConfig(**{**cfg.__dict__, "id_embedding": True}), 7, base, tok)
    with pytest.raises(ValueError, match="text-only"):
        retarget(with_ids, 11)


def test_domain_transfer_recipe(tmp_path, tiny_bert_dir, data):
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
    row = {(r["method"], r["fraction"], r["slice"]): r for r in report["rows"]}
    for r in report["rows"]:
        assert {"dataset", "method", "fraction", "slice", "seed", "ndcg@10", "trainable_params"} <= set(r)
    for method in ("adapted", "scratch", "id_only"):
        assert row[(method, 0.05, "all")]["steps"] > 0 and row[(method, 1.0, "all")]["seconds"] > 0
    zero_shot = row[("zero_shot", 0.0, "all")]["ndcg@10"]
    _, target = split_domains(data, "topic", list(SOURCE_TOPICS))
    test = leave_one_out(target).test
    gen = torch.Generator().manual_seed(0)
    random = np.mean(
        [
            metrics_from_ranks(popularity_ranks(torch.rand(target.num_items, generator=gen), test))["ndcg@10"]
            for _ in range(20)
        ]
    )
    assert zero_shot > random + 0.03, (zero_shot, random)
    assert row[("adapted", 1.0, "all")]["ndcg@10"] > zero_shot + 0.1
    assert row[("id_only", 1.0, "cold")]["ndcg@10"] == 0.0  # an ID-only model cannot rank unseen items
    assert row[("adapted", 1.0, "cold")]["ndcg@10"] > 0.0
    assert row[("popularity", 1.0, "cold")]["ndcg@10"] == 0.0  # never seen in training: counted as never popular
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert len(ranks["zero_shot|0.0"]) == row[("zero_shot", 0.0, "all")]["n_events"] == len(test)
    assert "| zero_shot | 0% | 1 |" in (tmp_path / "report.md").read_text()
    transfer_plot(report["rows"], tmp_path / "summary.png")
    assert "±" not in transfer_markdown(report["rows"])  # one seed: no spread shown
    # The chained adapters reload: the source folder and the target adaptation on top of it.
    adapted = json.loads((tmp_path / "target_adapted" / "config.json").read_text())
    assert adapted["parent"] == str(tmp_path / "source") and adapted["num_items"] == target.num_items
    items = tmp_path / "target_items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in target.items.to_list()))
    rec = Recommender.from_pretrained(tmp_path / "target_adapted", items, show_progress=False)
    assert len(rec.recommend([target.item_ids[0], target.item_ids[1]], k=5)) == 5
    Recommender.from_pretrained(tmp_path / "source", items, show_progress=False)  # zero-shot use, by text
