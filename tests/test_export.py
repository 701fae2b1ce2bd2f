"""Export to sentence-transformers: `SentenceTransformer(folder).encode(texts)` equals textrec's item vectors."""

import logging

import pytest
import torch
import torch.nn.functional as F

from textrec.config import ModelConfig
from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors
from textrec.model.build import build_model, item_tokens
from textrec.model.hub import load_pretrained, save_pretrained
from textrec.serve.export import export_sentence_transformers

pytest.importorskip("sentence_transformers")

# Different lengths, so batches are padded; the last one is longer than max_item_tokens (truncated).
TEXTS = ["alpha item1", "bravo charlie item2 item3 delta", "delta", "echo item4 alpha bravo item5 item6 item7 item8"]


def _saved_model(path, encoder_dir, **kw):
    """A tiny text model on the base saved at `encoder_dir`, every trainable weight moved (LoRA B starts at zero),
    saved as a textrec folder."""
    cfg = ModelConfig(**{"encoder": encoder_dir, "dim": 16, "max_history": 10, "max_item_tokens": 6, **kw})
    model, tok = build_model(cfg, len(TEXTS))
    torch.manual_seed(1)
    with torch.no_grad():  # stand-in for training
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    save_pretrained(model.eval(), path, cfg, [f"i{i}" for i in range(len(TEXTS))], tokenizer=tok, item_template="{t}")
    return path


def _textrec_vectors(folder, texts, text_only=False):
    model, tok, config = load_pretrained(folder)
    cfg = ModelConfig(**config["model"])
    text = compute_text_vectors(model, item_tokens(texts, tok, cfg, model), desc=None)
    vectors = model.item_proj(text) if text_only else compute_item_vectors(model, text)
    return F.normalize(vectors, dim=-1) if model.similarity == "cosine" else vectors


@pytest.mark.parametrize(
    "base, kw",
    [
        ("bert", {}),  # mean pooling, cosine: Normalize
        ("bert", {"pooling": "cls", "similarity": "dot"}),
        ("llama", {}),  # decoder: last-token pooling, EOS appended
    ],
)
def test_exported_model_encodes_like_the_item_tower(tmp_path, tiny_bert_dir, tiny_llama_dir, base, kw):
    from sentence_transformers import SentenceTransformer

    folder = _saved_model(tmp_path / "m", tiny_bert_dir if base == "bert" else tiny_llama_dir, **kw)
    out = export_sentence_transformers(str(folder), tmp_path / "st")
    st = SentenceTransformer(str(out), device="cpu")
    assert st.max_seq_length == 6
    # every text, the over-long one too: a decoder's EOS survives truncation in textrec and in the export alike
    exported = st.encode(TEXTS, convert_to_tensor=True, batch_size=2)
    assert torch.allclose(exported, _textrec_vectors(folder, TEXTS), atol=1e-5)
    names = [type(m).__name__ for m in st]
    similarity = kw.get("similarity", "cosine")
    assert names == ["Transformer", "Pooling", "Dense"] + (["Normalize"] if similarity == "cosine" else [])
    assert not (out / "adapter_config.json").exists()  # LoRA merged: a plain transformers model
    card = (out / "README.md").read_text()
    assert "sentence-transformers" in card
    if base == "llama":  # the over-long text keeps its EOS in both tokenizations, and the card says so
        model, tok, config = load_pretrained(folder)
        textrec_tokens = item_tokens(TEXTS[-1:], tok, ModelConfig(**config["model"]), model).input_ids[0]
        exported_tokens = st[0].preprocess(TEXTS[-1:])["input_ids"][0].tolist()
        assert exported_tokens == textrec_tokens and len(textrec_tokens) == 6
        assert textrec_tokens[-1] == tok.eos_token_id
        assert "always the last token" in card and "drops" not in card


def test_id_embedding_model_exports_its_text_part_and_says_so(tmp_path, tiny_bert_dir, caplog):
    from sentence_transformers import SentenceTransformer

    folder = _saved_model(tmp_path / "m", tiny_bert_dir, id_embedding=True)
    with caplog.at_level(logging.WARNING, logger="textrec.serve.export"):
        out = export_sentence_transformers(folder, tmp_path / "st")
    assert "text part only" in caplog.text
    assert "Text part only" in (out / "README.md").read_text()
    exported = SentenceTransformer(str(out), device="cpu").encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(exported, _textrec_vectors(folder, TEXTS, text_only=True), atol=1e-5)


def test_id_only_model_is_refused_and_a_failed_export_leaves_nothing(tmp_path):
    cfg = ModelConfig(encoder=None, id_embedding=True, dim=16, max_history=10)
    model, _ = build_model(cfg, 5)
    save_pretrained(model, tmp_path / "m", cfg, [str(i) for i in range(5)])
    with pytest.raises(ValueError, match="ID-only model has no text tower"):
        export_sentence_transformers(tmp_path / "m", tmp_path / "st")
    assert not (tmp_path / "st").exists()


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["minilm", "smollm2-135m"])
def test_real_encoders_export_like_the_item_tower(tmp_path, encoder):
    from sentence_transformers import SentenceTransformer

    try:
        folder = _saved_model(tmp_path / "m", encoder, max_item_tokens=32)
    except ImportError as err:
        pytest.skip(str(err))
    out = export_sentence_transformers(folder, tmp_path / "st")
    texts = ["Toy Story (1995). Genres: Animation Children's Comedy", "Heat (1995)", "a"]
    exported = SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_tensor=True)
    assert torch.allclose(exported, _textrec_vectors(folder, texts), atol=1e-5)
