"""Item text templates and the one-off tokenization of a catalogue."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import datasets

from textrec.data.records import DataError


@dataclass(frozen=True)
class ItemTemplate:
    """A `str.format` template over item fields, e.g. "{movie_title} ({release_year}). Genres: {class}".

    Fields named in the template must exist in the catalogue; an empty field renders as an empty string.
    """

    template: str

    @property
    def fields(self) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(self.template) if name]

    def check(self, available: Sequence[str], source: str = "item catalogue") -> None:
        missing = [f for f in self.fields if f not in available]
        if missing:
            raise DataError(
                f"{source}: the item template names field {missing[0]!r}, which is not a column "
                f"(columns: {sorted(available)})"
            )

    def render(self, record: dict) -> str:
        return self.template.format_map({f: record.get(f, "") or "" for f in self.fields}).strip()

    def render_all(self, items: datasets.Dataset) -> list[str]:
        self.check(items.column_names)
        columns = {f: items[f] for f in self.fields}
        return [self.render({f: columns[f][i] for f in self.fields}) for i in range(len(items))]


def default_template(fields: Sequence[str]) -> ItemTemplate:
    """MovieLens-style template when the fields are there, otherwise every field joined."""
    if {"movie_title", "release_year", "class"} <= set(fields):
        return ItemTemplate("{movie_title} ({release_year}). Genres: {class}")
    return ItemTemplate(" ".join("{" + f + "}" for f in fields))


def tokenize_texts(texts: Sequence[str], tokenizer, max_length: int, append_eos: bool = False) -> datasets.Dataset:
    """Tokenize once (with `datasets.map`) and keep unpadded token ids; batches are padded on the fly. With
    `append_eos` (last-token pooling) every sequence ends with EOS, also when the text was truncated."""
    suffix = tokenizer.eos_token if append_eos and tokenizer.eos_token else ""
    eos = tokenizer.eos_token_id if suffix else None

    def encode(batch):
        out = tokenizer([t + suffix for t in batch["text"]], truncation=True, max_length=max_length)
        ids = out["input_ids"]
        if eos is not None:  # truncation cut the EOS off: the last kept token makes way for it
            ids = [seq if seq and seq[-1] == eos else seq[: max_length - 1] + [eos] for seq in ids]
        return {"input_ids": ids}

    texts = list(texts)
    if len(texts) <= 1024:  # one batch (a request, a few added items): no progress bar for it
        return datasets.Dataset.from_dict({"text": texts, **encode({"text": texts})})
    return datasets.Dataset.from_dict({"text": texts}).map(encode, batched=True, batch_size=1024, desc="tokenizing")
