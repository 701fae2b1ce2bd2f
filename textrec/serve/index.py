"""The item index behind a `Recommender`: every catalogue item's vector, cached on disk as safetensors under a key of
the model (config, weights, tokenizer) and the catalogue (`index_key`), and searched for each user's top k, exactly
or through a FAISS index."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from textrec.files import load_keyed_tensors, save_keyed_tensors
from textrec.model.textrec_model import TextRecModel
from textrec.model.weights import update_with_tensors

logger = logging.getLogger(__name__)

INDEX_KINDS = ("exact", "faiss-flat", "faiss-hnsw", "faiss-ivf")


# tokenizer settings that say where it was read from, not how it tokenizes
_TOKENIZER_LOCATION = {"name_or_path", "is_local", "local_files_only", "vocab_file", "merges_file", "tokenizer_file"}


def index_key(model: TextRecModel, item_ids: Sequence[str], texts: Sequence[str]) -> str:
    """sha256 of what decides the item index: the model's config, weights (all of them, hashed by
    `update_with_tensors`) and tokenizer (`tokenizer_state`), and every catalogue item's id and rendered text. A
    stale cache is never used."""
    digest = hashlib.sha256(json.dumps(asdict(model.config), sort_keys=True, default=str).encode())
    digest.update(tokenizer_state(model.tokenizer).encode())
    update_with_tensors(digest, model.towers.state_dict())
    for item_id, text in zip(item_ids, texts):
        digest.update(f"{item_id}\x00{text}\x01".encode())
    return digest.hexdigest()


def tokenizer_state(tokenizer) -> str:
    """How `tokenizer` turns text into ids, as one JSON text: a fast tokenizer's whole pipeline (`tokenizer.json`:
    vocabulary, merges, normaliser, pre-tokenizer, post-processor, added tokens), else its vocabulary, plus its
    settings (`tokenizer_config.json`: special tokens, model_max_length, padding and truncation sides, BOS / EOS
    flags). Where it was read from does not count, nor the truncation and padding a call last set."""
    if tokenizer is None:
        return "no tokenizer"
    if tokenizer.is_fast:
        pipeline = json.loads(tokenizer.backend_tokenizer.to_str())
        pipeline.pop("truncation", None), pipeline.pop("padding", None)  # set by each call, not by the files
    else:
        pipeline = tokenizer.get_vocab()
    plain = (str, int, float, bool, type(None))  # special tokens are in special_tokens_map and the pipeline
    settings = {
        k: v for k, v in tokenizer.init_kwargs.items() if k not in _TOKENIZER_LOCATION and isinstance(v, plain)
    }
    sides = [tokenizer.padding_side, tokenizer.truncation_side, tokenizer.model_max_length]
    return json.dumps([pipeline, settings, sides, tokenizer.special_tokens_map], sort_keys=True, default=str)


def cached_index(
    cache_dir: Path | None,
    key: str,
    build: Callable[[], tuple[torch.Tensor | None, torch.Tensor]],
    device: torch.device,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(text vectors or None, item vectors) on `device`: read from `cache_dir`'s file for `key`, or made by `build()`
    and written there (without a `cache_dir`, always built)."""
    path = cache_dir / f"item_index-{key[:16]}.safetensors" if cache_dir else None
    stored = load_keyed_tensors(path, key) if path is not None else None
    if stored is not None:
        logger.info(f"item index loaded from cache {path}")
        text = stored.get("text_vectors")
        return None if text is None else text.to(device), stored["item_vectors"].to(device)
    text, vectors = build()
    if path is not None:
        tensors = {"item_vectors": vectors} if text is None else {"item_vectors": vectors, "text_vectors": text}
        save_keyed_tensors(path, tensors, key)
        logger.info(f"item index cached at {path}")
    return text, vectors


def exact_top_k(
    search: torch.Tensor,
    users: torch.Tensor,
    k: int,
    exclude: list[list[int]],
    item_ids: Sequence[str],
    unrankable: torch.Tensor | None,
):
    """Top-k (item_id, score) per user: every item scored (`users @ search.T`), the `exclude`d rows of each user and
    the `unrankable` items left out."""
    scores = users @ search.T
    if unrankable is not None:
        scores[:, unrankable] = float("-inf")
    for row, ex in enumerate(exclude):
        if ex:
            scores[row, torch.as_tensor(ex)] = float("-inf")
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    return [
        [(item_ids[j], float(s)) for j, s in zip(idx.tolist(), val.tolist()) if s != float("-inf")]
        for val, idx in zip(top.values, top.indices)
    ]


def faiss_top_k(
    index, users: torch.Tensor, k: int, exclude: list[list[int]], item_ids: Sequence[str], unrankable
) -> list:
    """`exact_top_k` through a FAISS index: enough neighbours asked for to leave k once the excluded are dropped."""
    extra = max((len(e) for e in exclude), default=0)
    scores, idx = index.search(users.cpu().numpy().astype("float32"), min(len(item_ids), k + extra))
    results = []
    for row, ex in enumerate(exclude):
        banned = set(ex)
        pairs = [
            (item_ids[j], float(s))
            for j, s in zip(idx[row], scores[row])
            if j >= 0 and j not in banned and (unrankable is None or not unrankable[j])
        ]
        results.append(pairs[:k])
    return results


def build_faiss_index(vectors, kind: str):
    """Inner-product FAISS index over `vectors` [N, D] float32: exact (flat), HNSW or IVF."""
    try:
        import faiss
    except ImportError as e:
        raise ImportError("FAISS indexes need the faiss-cpu package: pip install faiss-cpu") from e
    dim = vectors.shape[1]
    if kind == "faiss-flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "faiss-hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        nlist = max(1, min(1024, int(len(vectors) ** 0.5)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = max(1, nlist // 8)
    index.add(vectors)
    return index
