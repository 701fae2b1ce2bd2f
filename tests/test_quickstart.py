"""The quickstart (examples/quickstart.py) end to end: the real MiniLM from its PyPI wheel (no Hub download) learns
the planted signal in a short budget, and its saved folder, loaded back, recommends the queried genre from free text.
"""

import importlib.util
import logging
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_learns_and_recommends_from_its_saved_folder(tmp_path, capsys):
    textrec_logger = logging.getLogger("textrec")
    level = textrec_logger.level
    try:
        out = _load_example().main(["--output-dir", str(tmp_path), "--steps", "40"])
    finally:
        textrec_logger.setLevel(level)  # main() turns on the loop's INFO lines for the console
    ndcg = out["ndcg"]
    trained = ndcg["trained model"]
    assert trained > ndcg["popularity"] + 0.15, ndcg
    assert trained > ndcg["untrained model"] + 0.15, ndcg
    # Every third book's title hides its genre: only training (book vectors + LoRA) recovers it from the readers.
    assert trained > ndcg["MiniLM similarity, no training"] + 0.02, ndcg

    genre = {item_id: g for item_id, (_, g) in out["items"].items()}
    assert [genre[i] for i, _ in out["by_text"]] == ["pirates"] * 5, out["by_text"]
    favourite = max(set(genre[i] for i in out["history"]), key=[genre[i] for i in out["history"]].count)
    assert sum(genre[i] == favourite for i, _ in out["by_history"]) >= 4, (favourite, out["by_history"])
    assert not set(i for i, _ in out["by_history"]) & set(out["history"]), "a book already read was recommended"

    model_dir = tmp_path / "model"
    for name in ("config.json", "adapter_model.safetensors", "textrec_weights.safetensors", "README.md"):
        assert (model_dir / name).is_file(), name
    assert not list(model_dir.glob("model.safetensors")), "the frozen MiniLM weights were saved"
    printed = capsys.readouterr().out
    assert "| trained model |" in printed and "top-5 for 'a story about pirates':" in printed
