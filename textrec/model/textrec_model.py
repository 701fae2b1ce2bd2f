"""`TextRecModel`: one object that owns a recommender - its towers, config, tokenizer, item template and item ids.

As a sentence-transformers or peft model does, it builds itself from its config (`from_config`), writes and reads
its folder (`save_pretrained`, `from_pretrained` from a folder or a Hub repo id at a revision), pushes itself
(`push_to_hub`), and encodes and scores (`encode_items`, `encode_catalogue`, `encode_users`, `encode_queries`,
`score`, and `score` as an index searches it: `score_matrix` / `score_queries`). Recipes, `update_adapter`, export
and `Recommender` all go through it, so the pieces a folder needs are never passed by hand and the scoring rule
lives in one place.

The folder format is `textrec.model.folder`'s (format version 1): folders written before this class existed load.
`huggingface_hub.ModelHubMixin` is not used: its `save_pretrained` writes its own config.json and model card into
the folder, while a textrec folder is written atomically (one rename) with its own config and card.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from textrec.config import ModelConfig
from textrec.data.features import ItemTokens
from textrec.data.text import ItemTemplate
from textrec.model.towers import TwoTowerModel


class TextRecModel:
    """A two-tower recommender with everything its folder holds.

    towers: the `TwoTowerModel` (an `nn.Module`); config: its `ModelConfig`; item_ids: the item id of each id row
    (the training catalogue's order); tokenizer: the encoder's (None for ID-only models); item_template: the
    `str.format` template that renders an item's text (a text model is saved only with one; folders of older
    releases may lack it); saved_config / folder: the config.json and the folder it was loaded from, if any."""

    def __init__(
        self,
        towers: TwoTowerModel,
        config: ModelConfig,
        item_ids: Sequence[str],
        *,
        tokenizer=None,
        item_template: str | None = None,
        saved_config: Mapping | None = None,
        folder: Path | None = None,
    ):
        if len(item_ids) != towers.num_items:
            raise ValueError(f"TextRecModel: {len(item_ids)} item ids for a model of {towers.num_items} id rows")
        self.towers, self.config, self.tokenizer = towers, config, tokenizer
        self.item_ids = [str(i) for i in item_ids]
        self.item_template = item_template
        self.saved_config = dict(saved_config or {})
        self.folder = folder  # the folder it was loaded from (None for a model built in this process)
        self._rows = {item_id: row for row, item_id in enumerate(self.item_ids)}

    # ----- construction and the folder -----
    @classmethod
    def from_config(
        cls,
        config: ModelConfig,
        item_ids: Sequence[str],
        *,
        item_template: str | None = None,
        base=None,
        tokenizer=None,
    ) -> TextRecModel:
        """A fresh model: the base encoder loaded by `config.encoder` (or the `base` / `tokenizer` given), the train
        mode (LoRA, ...) applied, new heads."""
        from textrec.model.build import build_model

        towers, tokenizer = build_model(config, len(item_ids), base, tokenizer)
        return cls(towers, config, item_ids, tokenizer=tokenizer, item_template=item_template)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, revision: str | None = None, token=None, base=None, tokenizer=None
    ) -> TextRecModel:
        """Load a model folder or a Hub repo id (at `revision`); the base encoder is checked against the recorded
        fingerprint and weights hash."""
        from textrec.model.folder import load_folder
        from textrec.model.hub import model_folder

        folder = model_folder(name_or_path, revision, token)
        towers, tokenizer, saved = load_folder(folder, base=base, tokenizer=tokenizer)
        item_ids = json.loads((folder / "item_ids.json").read_text(encoding="utf-8"))
        return cls(
            towers,
            ModelConfig(**saved["model"]),
            item_ids,
            tokenizer=tokenizer,
            item_template=saved.get("item_template"),
            saved_config=saved,
            folder=folder,
        )

    def save_pretrained(
        self,
        directory: str | Path,
        *,
        metrics: Mapping | None = None,
        extra_config: Mapping | None = None,
        card: str | None = None,
    ) -> Path:
        """Write the folder atomically (adapters, heads, config, item ids, tokenizer, model card)."""
        from textrec.model.folder import save_pretrained

        return save_pretrained(
            self.towers,
            directory,
            self.config,
            self.item_ids,
            tokenizer=self.tokenizer,
            item_template=self.item_template,
            metrics=metrics,
            extra_config=extra_config,
            card=card,
        )

    def push_to_hub(
        self, repo_id: str, *, token: str | None = None, private: bool = False, commit_message: str | None = None
    ) -> str:
        """Save into a temporary folder and upload it to `repo_id` (created if needed); returns the repo URL."""
        from textrec.model.hub import push_to_hub

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "model", extra_config=self._carried_config())
            message = commit_message or "Upload textrec model"
            return push_to_hub(folder, repo_id, token=token, private=private, commit_message=message)

    def _carried_config(self) -> dict:
        """What a loaded folder recorded beyond the model itself (protocol, dataset, metrics) and a re-save keeps."""
        keep = ("protocol", "dataset", "metrics")
        return {k: self.saved_config[k] for k in keep if k in self.saved_config}

    # ----- the module -----
    @property
    def has_text(self) -> bool:
        return self.towers.has_text

    @property
    def device(self) -> torch.device:
        return next(self.towers.parameters()).device

    def to(self, device) -> TextRecModel:
        self.towers.to(device)
        return self

    def eval(self) -> TextRecModel:
        self.towers.eval()
        return self

    def id_rows(self, item_ids: Sequence[str]) -> torch.Tensor:
        """The id row of each item (-1 for items the model has no id for: scored by their text alone)."""
        return torch.as_tensor([self._rows.get(str(i), -1) for i in item_ids], dtype=torch.long)

    # ----- encoding and scoring -----
    def template(self) -> ItemTemplate:
        return ItemTemplate(self.item_template)

    def tokenize(self, texts: Sequence[str]) -> ItemTokens:
        """Item texts as the item tower reads them (`textrec.model.build.item_tokens`: truncated, EOS appended for
        decoder encoders)."""
        from textrec.model.build import item_tokens

        return item_tokens(texts, self.tokenizer, self.config, self.towers)

    @torch.no_grad()
    def encode_items(
        self, texts: Sequence[str] | None, item_ids: Sequence[str], batch_size: int = 256, desc: str | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(pooled text vectors or None, item vectors [N, D]) of items given by their rendered texts and ids; an
        id the model has no row for gets the text part alone."""
        from textrec.model.encode import compute_text_vectors

        text = None
        if self.has_text:
            if texts is None or len(texts) != len(item_ids):
                raise ValueError("encode_items: a text model needs one text per item")
            text = compute_text_vectors(self.towers, self.tokenize(texts), batch_size, desc=desc)
        rows = self.id_rows(item_ids).to(self.device)
        if not len(rows):
            return text, torch.zeros(0, self.towers.dim, device=self.device)
        return text, self.towers.item_vectors(rows, text).float()

    def encode_catalogue(self, items, batch_size: int = 256, desc: str | None = None):
        """`encode_items` over a catalogue (a `datasets.Dataset` or a list of mappings with `item_id` and the
        template's fields), rendered with the model's own item template."""
        import datasets

        if not isinstance(items, datasets.Dataset):
            items = datasets.Dataset.from_list([dict(r) for r in items])
        ids = [str(i) for i in items["item_id"]]
        texts = self.template().render_all(items) if self.has_text else None
        return self.encode_items(texts, ids, batch_size, desc)

    def history_text(self, item_texts: Sequence[str]):
        """The `HistoryText` that renders and tokenizes histories of these item texts for the text user tower, as
        training and evaluation do (`textrec.model.build.history_text`; None for a sequence user tower)."""
        from textrec.model.build import history_text

        return history_text(item_texts, self.tokenizer, self.config)

    @torch.no_grad()
    def encode_users(self, histories: Sequence[Sequence[int]], item_vectors: torch.Tensor, history_text=None):
        """User vectors [U, D] of histories given as rows of `item_vectors` (oldest first); a text user tower also
        needs a `HistoryText` (the `history_text` method's)."""
        from textrec.model.encode import encode_histories

        return encode_histories(self.towers, histories, item_vectors, history_text)

    @torch.no_grad()
    def encode_queries(self, texts: Sequence[str], history_text=None) -> torch.Tensor:
        """User vectors [U, D] of free-text histories. The text user tower reads each text as a history rendered by
        `history_text` (its prefix, truncated from the left as in training, so the most recent words survive); the
        sequence user tower reads it as a one-item history whose item is known by that text alone."""
        if self.towers.user_tower == "text":
            if history_text is None:
                history_text = self.history_text([])
            return self.encode_users([[text] for text in texts], torch.zeros(0, device=self.device), history_text)
        if not self.has_text:
            raise ValueError("this model has no text encoder: a free-text history cannot be read")
        from textrec.model.encode import compute_text_vectors

        text = compute_text_vectors(self.towers, self.tokenize(texts), len(texts) or 1, desc=None)
        vectors = self.towers.item_vectors(torch.full((len(texts),), -1, device=self.device), text).float()
        return self.encode_users([[row] for row in range(len(texts))], vectors)

    def rankable(self, item_ids: Sequence[str]) -> torch.Tensor | None:
        """Which of these items the model can score ([N] bool, on the CPU), or None for all: a text model scores
        every item; an ID-only model only the items it trained an id for."""
        if self.has_text:
            return None
        rows = self.id_rows(item_ids)
        return (rows >= 0) & self.towers.id_trained[rows.clamp_min(0)].cpu()

    def score(self, users: torch.Tensor, item_vectors: torch.Tensor, item_ids: Sequence[str] | None = None):
        """[U, D] x [N, D] -> [U, N] logits: similarity / temperature, plus each item's bias when `item_ids` name
        them (the model's one scoring rule, `TwoTowerModel.score`)."""
        rows = None if item_ids is None else self.id_rows(item_ids).to(item_vectors.device)
        return self.towers.score(users, item_vectors, rows)

    def score_matrix(self, item_vectors: torch.Tensor, item_ids: Sequence[str] | None = None) -> torch.Tensor:
        """`score` as an index searches it, its item side: `score(u, items, ids)` equals `score_queries(u) @
        score_matrix(items, ids).T` (`TwoTowerModel.score_matrix`)."""
        rows = None if item_ids is None else self.id_rows(item_ids).to(item_vectors.device)
        return self.towers.score_matrix(item_vectors, rows)

    def score_queries(self, users: torch.Tensor) -> torch.Tensor:
        """The user side of `score_matrix` (`TwoTowerModel.score_queries`)."""
        return self.towers.score_queries(users)


__all__ = ["TextRecModel"]
