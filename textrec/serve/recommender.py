"""`Recommender`: load a trained model folder and a catalogue, and recommend, for downstream apps.

The item index (every catalogue item's vector, `textrec.serve.index`) is built once in batches and cached on disk as
safetensors, keyed by a hash of the model's weights, config and tokenizer and of the catalogue's ids and texts, so a
stale cache is never used.
New items are added by their text alone (`add_items`) and are recommendable at once, without retraining.
The model and the item index live on `device` (default: CUDA when available); every answer is plain Python.
A model whose weights, item vectors or scores are NaN or infinite is refused, naming the weight, the items or the
history: no answer ever holds a NaN score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F

from textrec.data.text import ItemTemplate, default_template
from textrec.model.textrec_model import TextRecModel
from textrec.serve.index import (
    INDEX_KINDS,
    build_faiss_index,
    cached_index,
    exact_top_k,
    faiss_top_k,
    index_key,
)


class UnknownItemsError(KeyError):
    """Item ids that are not in the catalogue; `.ids` lists them all."""

    def __init__(self, ids: Sequence[str]):
        self.ids = list(ids)
        super().__init__(f"unknown item ids: {self.ids}")

    def __str__(self) -> str:
        return f"unknown item ids: {self.ids}"


class Recommender:
    """Recommend from a history (item ids or free text) over a catalogue, with a cached item index; it scores
    through its `TextRecModel` (`model`)."""

    def __init__(
        self,
        model: TextRecModel,
        items: datasets.Dataset,
        *,
        template: str | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 256,
        index: str = "exact",
        show_progress: bool = True,
        device: str | torch.device | None = None,
    ):
        if index not in INDEX_KINDS:
            raise ValueError(f"index: expected one of {INDEX_KINDS}, got {index!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.name = f"model {model.folder}" if model.folder else "the model"  # for error messages
        self._refuse_non_finite_weights()
        self.towers = model.towers
        self.tokenizer = model.tokenizer
        self.config = model.config
        text_template = template or model.item_template
        fields = [c for c in items.column_names if c != "item_id"]
        self.template = ItemTemplate(text_template) if text_template else default_template(fields)
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.index_kind = index
        self.show_progress = show_progress
        self.template.check(items.column_names, source="catalogue")
        self.item_ids: list[str] = [str(i) for i in items["item_id"]]
        self.texts: list[str] = self.template.render_all(items)
        self.positions = {item_id: i for i, item_id in enumerate(self.item_ids)}
        if len(self.positions) != len(self.item_ids):
            raise ValueError("catalogue: duplicate item ids")
        self.history_text = model.history_text(self.texts)  # the text user tower's, as in training and evaluation
        self.text_vectors, self.item_vectors = self._load_or_build_index()
        self._refuse_non_finite_rows(self.item_vectors, self.item_ids, "item vectors")
        self._refresh_search()

    # ----- construction -----
    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        items: datasets.Dataset | str | Path,
        *,
        template: str | None = None,
        base=None,
        revision: str | None = None,
        token: str | bool | None = None,
        device: str | torch.device | None = None,
        **kwargs,
    ) -> Recommender:
        """Load a saved model folder (or a Hub repo id at `revision`) and a catalogue (a Dataset with item_id + text
        fields, or an items file: RecBole `.item`, CSV, TSV, JSONL or Parquet) onto `device` ("cpu", "cuda", "mps",
        "cuda:1" or a `torch.device`; default: "cuda" when available, else "cpu")."""
        from textrec.data.readers import load_items

        model = TextRecModel.from_pretrained(model_dir, revision=revision, token=token, base=base)
        if not isinstance(items, datasets.Dataset):
            items = load_items(items)
        return cls(model, items, template=template, device=device, **kwargs)

    def _encode_texts(self, texts: Sequence[str], item_ids: Sequence[str], desc: str | None):
        return self.model.encode_items(texts, item_ids, self.batch_size, desc if self.show_progress else None)

    def cache_key(self) -> str:
        """The key of the cached item index: the model's config, weights and tokenizer and the catalogue
        (`index_key`)."""
        return index_key(self.model, self.item_ids, self.texts)

    def _load_or_build_index(self):
        def build():
            return self._encode_texts(self.texts, self.item_ids, "building item index")

        return cached_index(self.cache_dir, self.cache_key(), build, self.device)

    def _refresh_search(self) -> None:
        """The matrix scored against users: the model's own scoring rule as one matrix (`score_matrix`)."""
        with torch.no_grad():
            items = self.model.score_matrix(self.item_vectors, self.item_ids)
        self._refuse_non_finite_rows(items, self.item_ids, "scoring rows (item vectors and biases)")
        self._search = items.contiguous()
        rankable = self.model.rankable(self.item_ids)  # an ID-only model cannot score items it never trained on
        self._unrankable = None if rankable is None or rankable.all() else ~rankable
        self._faiss = None
        if self.index_kind != "exact" and len(items):
            self._faiss = build_faiss_index(self._search.cpu().numpy(), self.index_kind)

    # ----- queries -----
    def __len__(self) -> int:
        return len(self.item_ids)

    def _positions(self, history: Sequence[str]) -> list[int]:
        unknown = [i for i in history if i not in self.positions]
        if unknown:
            raise UnknownItemsError(unknown)
        return [self.positions[i] for i in history]

    def user_vectors(self, histories: Sequence[Sequence[str] | str]) -> torch.Tensor:
        """One vector per history (on the CPU); a history is a list of item ids or one free-text string."""
        return self._user_vectors(histories).cpu()

    @torch.no_grad()
    def _user_vectors(self, histories: Sequence[Sequence[str] | str]) -> torch.Tensor:
        """The model's user vectors: item-id histories in one batch (`encode_users`), each free text on its own
        (`encode_queries`), both read by the text user tower through the same `HistoryText` as in evaluation."""
        if self.history_text is not None:
            self.history_text.item_texts = self.texts  # includes items added since
        out = [self.model.encode_queries([h], self.history_text)[0] if isinstance(h, str) else None for h in histories]
        id_rows = [i for i, h in enumerate(histories) if not isinstance(h, str)]
        if id_rows:
            positions = [self._positions(histories[i]) for i in id_rows]
            users = self.model.encode_users(positions, self.item_vectors, self.history_text)
            for row, user in zip(id_rows, users):
                out[row] = user
        return torch.stack(out) if out else torch.zeros(0, self.towers.dim, device=self.device)

    def recommend(self, history: Sequence[str] | str, k: int = 10, exclude_seen: bool = True):
        """Top-k (item_id, score) for one history (item ids, oldest first, or free text). A score that is not a
        finite number is never returned: it is a ValueError naming the model and the item."""
        return self.recommend_batch([history], k, exclude_seen)[0]

    def recommend_batch(self, histories: Sequence[Sequence[str] | str], k: int = 10, exclude_seen: bool = True):
        self._check_k(k)
        for h in histories:
            if (isinstance(h, str) and not h.strip()) or (not isinstance(h, str) and len(h) == 0):
                raise ValueError("history is empty: give at least one item id or a non-empty text")
        with torch.no_grad():
            users = self.model.score_queries(self._user_vectors(histories))
        seen = [self._positions(h) if exclude_seen and not isinstance(h, str) else [] for h in histories]
        return self._top_k(users, k, seen)

    def _top_k(self, users: torch.Tensor, k: int, exclude: list[list[int]]):
        if self._faiss is not None:
            results = faiss_top_k(self._faiss, users, k, exclude, self.item_ids, self._unrankable)
        else:
            results = exact_top_k(self._search, users, k, exclude, self.item_ids, self._unrankable)
        for row, pairs in enumerate(results):
            bad = [(item_id, score) for item_id, score in pairs if not math.isfinite(score)]
            if bad:
                raise ValueError(
                    f"{self.name}: history {row} of the batch scores item {bad[0][0]!r} {bad[0][1]} (not a finite "
                    "number): its user vector or scoring is broken (NaN or infinite weights?); no answer is given"
                )
        return results

    # ----- non-finite values are refused -----
    def _refuse_non_finite_weights(self) -> None:
        """A model with a NaN or infinite weight is broken (a diverged training run): refused before it serves."""
        for name, tensor in self.model.towers.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(
                    f"{self.name}: weight {name} holds NaN or infinite values: the model is broken (a diverged "
                    "training run?); retrain it or serve another version"
                )

    def _refuse_non_finite_rows(self, rows: torch.Tensor, item_ids: Sequence[str], what: str) -> None:
        bad = (~torch.isfinite(rows).all(dim=1)).nonzero().flatten().tolist() if len(rows) else []
        if bad:
            first = [item_ids[i] for i in bad[:5]]
            raise ValueError(
                f"{self.name}: the {what} of {len(bad)} items are NaN or infinite (first: {first}): they cannot be "
                "ranked; the model is broken (NaN or infinite weights?) or the item text cannot be encoded"
            )

    def similar_items(self, item_id: str, k: int = 10):
        """Items whose vectors are closest to `item_id`'s (cosine), excluding the item itself."""
        self._check_k(k)
        (pos,) = self._positions([item_id])
        query = F.normalize(self.item_vectors[pos : pos + 1], dim=-1)
        scores = (query @ F.normalize(self.item_vectors, dim=-1).T)[0]
        scores[pos] = float("-inf")
        top = torch.topk(scores, min(k, len(self) - 1))
        return [(self.item_ids[j], float(s)) for j, s in zip(top.indices.tolist(), top.values.tolist())]

    def _check_k(self, k) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > len(self):
            raise ValueError(f"k={k} is larger than the catalogue ({len(self)} items)")

    # ----- cold start -----
    def add_items(self, items: Sequence[Mapping[str, str]]) -> list[str]:
        """Encode new items by their text and make them recommendable at once. Each item is a mapping with
        `item_id` and the template's fields. Returns the ids added."""
        if not items:
            return []
        ids, texts = [], []
        for n, item in enumerate(items):
            item_id = str(item.get("item_id", "")).strip()
            if not item_id:
                raise ValueError(f"items[{n}]: missing 'item_id'")
            if item_id in self.positions or item_id in ids:
                raise ValueError(f"items[{n}]: item id {item_id!r} already exists")
            missing = [f for f in self.template.fields if f not in item]
            if missing:
                raise ValueError(f"items[{n}] ({item_id}): missing field {missing[0]!r} of the item template")
            ids.append(item_id)
            texts.append(self.template.render(dict(item)))
        text, vectors = self._encode_texts(texts, ids, None)
        self._refuse_non_finite_rows(vectors, ids, "item vectors")  # before any change: the catalogue stays whole
        for item_id in ids:
            self.positions[item_id] = len(self.item_ids)
            self.item_ids.append(item_id)
        self.texts.extend(texts)
        if text is not None and self.text_vectors is not None:
            self.text_vectors = torch.cat([self.text_vectors, text])
        self.item_vectors = torch.cat([self.item_vectors, vectors])
        self._refresh_search()
        return ids


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as a `torch.device` ("cuda" when available and none is given, else "cpu"); a device this machine
    does not have is a ValueError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: {device!r} is not a torch device ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(device)!r} was asked for, but CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device: {str(device)!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device: 'mps' was asked for, but MPS is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: expected cpu, cuda, cuda:N or mps, got {str(device)!r}")
    return device
