"""The downstream front doors: Recommender(device=...), `textrec recommend --input` batches, `textrec export`,
`textrec configs` and `textrec run`."""

import copy

import pytest
import torch

from textrec.recommender import Recommender


def _load(trained_model_dir, _tiny_bert, tmp_path, **kwargs):
    out, items_path, _ = trained_model_dir
    return Recommender.from_pretrained(
        out, items_path, base=copy.deepcopy(_tiny_bert[0]), cache_dir=tmp_path, show_progress=False, **kwargs
    )


# ----- Recommender(device=...) -----
def test_device_cpu_answers_in_plain_python(trained_model_dir, _tiny_bert, tmp_path):
    rec = _load(trained_model_dir, _tiny_bert, tmp_path, device="cpu")
    assert rec.device == torch.device("cpu") and rec.item_vectors.device.type == "cpu"
    assert next(rec.model.parameters()).device.type == "cpu"
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
