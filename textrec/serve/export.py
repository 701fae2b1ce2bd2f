"""Export the item tower of a textrec model as a sentence-transformers model: item text in, item vector out.

The exported folder holds the item encoder with its LoRA adapter merged into the weights (a plain `transformers`
model, no peft needed), the pooling textrec uses (`cls`, `mean`, or `lasttoken` for decoder-only encoders, whose
tokenizer then appends the EOS token as textrec does), the item projection as a `Dense` layer (identity activation,
with bias) and, when the model scores by cosine, `Normalize`. `SentenceTransformer(folder).encode(texts)` then gives
textrec's item vectors for the same item texts (normalised for cosine models), truncated to `max_item_tokens`.

A model whose item vector adds a learned id embedding can be exported for its text part only: the export logs a
warning and says so in its README.md.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path

from textrec.files import atomic_dir

logger = logging.getLogger(__name__)

# textrec pooling -> sentence-transformers pooling mode
POOLING_MODES = {"cls": "cls", "mean": "mean", "last": "lasttoken"}
# Short texts to check that the exported tokenizer gives exactly textrec's item tokens.
PROBE_TEXTS = ["item", "a short item text"]


def export_sentence_transformers(
    model: str | Path, output_dir: str | Path, revision: str | None = None, token: str | bool | None = None
) -> Path:
    """Write the item tower of `model` (a saved textrec folder or Hub repo id, at `revision`) as a
    sentence-transformers model folder at `output_dir`, atomically. Returns the folder."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError("exporting needs sentence-transformers: pip install sentence-transformers") from None
    from textrec.model.textrec_model import TextRecModel

    loaded = TextRecModel.from_pretrained(model, revision=revision, token=token)
    two_tower, tokenizer, config = loaded.towers, loaded.tokenizer, loaded.saved_config
    if not two_tower.has_text:
        raise ValueError(f"{model}: an ID-only model has no text tower to export")
    if two_tower.id_embedding is not None:
        logger.warning(
            f"{model}: the item vector adds a learned id embedding, which a text model cannot hold; the export "
            "covers the text part only (its vectors differ from textrec's item vectors for catalogue items)"
        )
    output_dir = Path(output_dir)
    with tempfile.TemporaryDirectory(prefix="textrec-export-") as encoder_dir:
        decoder = two_tower.item_encoder.pooling == "last"
        _save_encoder(two_tower, _item_tokenizer(tokenizer, decoder), Path(encoder_dir))
        modules = _modules(two_tower, encoder_dir, config["model"]["max_item_tokens"])
        _check_tokens(modules[0], tokenizer, config["model"]["max_item_tokens"], decoder)
        st_model = SentenceTransformer(modules=modules, similarity_fn_name=two_tower.similarity)
        with atomic_dir(output_dir) as tmp:
            st_model.save(str(tmp), create_model_card=False)
            (tmp / "README.md").write_text(export_card(config, str(model), revision))
    return output_dir


def _item_tokenizer(tokenizer, decoder: bool):
    """The tokenizer as textrec tokenizes item text: padded on the right and, for decoder-only encoders, with the
    EOS token appended (textrec appends it to the text; here the post-processor adds it)."""
    from tokenizers import processors

    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.padding_side = "right"
    tokenizer.chat_template = None  # with one, sentence-transformers renders each text as a chat message
    if decoder:
        eos = tokenizer.eos_token
        append_eos = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, tokenizer.eos_token_id)]
        )
        backend = tokenizer.backend_tokenizer
        current = backend.post_processor
        backend.post_processor = append_eos if current is None else processors.Sequence([current, append_eos])
    return tokenizer


def _save_encoder(two_tower, tokenizer, directory: Path) -> None:
    """The item encoder with LoRA merged into its weights (on a copy), and its tokenizer."""
    from peft import PeftModel

    encoder = copy.deepcopy(two_tower.item_encoder.model)
    if isinstance(encoder, PeftModel):
        encoder = encoder.merge_and_unload()
    quantizer = getattr(encoder, "hf_quantizer", None)  # set by transformers only on models loaded quantized
    if quantizer is not None and quantizer.quantization_config.quant_method == "gguf":
        # textrec loads GGUF files (SmolLM2) dequantized into plain float weights: save those as they are
        quantizer.remove_quantization_config(encoder)
    encoder.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _modules(two_tower, encoder_dir, max_item_tokens: int) -> list:
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from torch import nn

    transformer = Transformer(str(encoder_dir), max_seq_length=max_item_tokens)
    pooling = Pooling(two_tower.item_encoder.hidden_size, pooling_mode=POOLING_MODES[two_tower.item_encoder.pooling])
    proj = two_tower.item_proj
    dense = Dense(
        proj.in_features,
        proj.out_features,
        bias=True,
        activation_function=nn.Identity(),
        init_weight=proj.weight.detach().clone(),
        init_bias=proj.bias.detach().clone(),
    )
    return [transformer, pooling, dense] + ([Normalize()] if two_tower.similarity == "cosine" else [])


def _check_tokens(transformer, tokenizer, max_item_tokens: int, decoder: bool) -> None:
    """The exported module (its tokenizer read back from disk) must give textrec's item tokens."""
    from textrec.data.text import tokenize_texts

    exported = [transformer.preprocess([text])["input_ids"][0].tolist() for text in PROBE_TEXTS]
    expected = tokenize_texts(PROBE_TEXTS, tokenizer, max_item_tokens, append_eos=decoder)["input_ids"]
    if exported != expected:
        raise ValueError(
            f"the exported tokenizer does not reproduce textrec's item tokens ({exported} != {expected} for "
            f"{PROBE_TEXTS}): this tokenizer type is not supported by the export"
        )


def export_card(config: dict, source: str, revision: str | None) -> str:
    """README.md of an exported folder: sentence-transformers metadata and what the vectors are."""
    from huggingface_hub import ModelCard, ModelCardData

    from textrec.model.card import base_model_id

    model = config["model"]
    pooling = config["base_encoder"]["pooling"]
    notes = []
    if model.get("id_embedding"):
        notes.append(
            "**Text part only.** The textrec model adds a learned item-id embedding to each item vector; a text "
            "model cannot hold it, so these vectors are the text part alone and differ from the textrec model's "
            "item vectors for catalogue items."
        )
    if model.get("item_bias"):
        notes.append(
            "The textrec model also adds a learned per-item bias (popularity) to its scores; it is not part of "
            "the item vectors and is not exported."
        )
    if pooling == "last":
        notes.append(
            "The tokenizer appends the EOS token (last-token pooling reads it), as textrec does: an item text "
            f"longer than {model['max_item_tokens']} tokens with its EOS is cut to make room for it, so the EOS is "
            "always the last token, in textrec and in this model alike."
        )
    data = ModelCardData(
        library_name="sentence-transformers",
        base_model=base_model_id(config),
        pipeline_tag="sentence-similarity",
        tags=["sentence-transformers", "feature-extraction", "textrec", "recommender-system"],
    )
    where = f"`{source}`" + (f" at revision `{revision}`" if revision else "")
    if model["similarity"] == "cosine":
        head = "and `Normalize` (the model scores by cosine)"
    else:
        head = "without normalisation (the model scores by dot product)"
    body = f"""---
{{{{ card_data }}}}
---

# Item tower of a textrec recommender

Exported from the textrec model {where}: the item encoder with its LoRA adapter merged, {pooling} pooling, the
item projection to {model["dim"]} dimensions (`Dense`, identity activation) {head}. Item texts are truncated to
{model["max_item_tokens"]} tokens. Render items with the model's template: `{config.get("item_template")}`.

{"".join(f"{note}{chr(10)}{chr(10)}" for note in notes)}## Usage

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/this/folder")
vectors = model.encode(["item text rendered with the template"])
```
"""
    return str(ModelCard.from_template(data, template_str=body)).rstrip("\n") + "\n"
