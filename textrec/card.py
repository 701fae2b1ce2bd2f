"""The generated model card (README.md) of a saved textrec model."""

from __future__ import annotations

import hashlib

import yaml

MARKER = "<!-- textrec-generated-card sha256:"


def _stamp(body: str) -> str:
    return f"{body}\n{MARKER}{hashlib.sha256(body.encode()).hexdigest()} -->\n"


def is_generated_card(text: str) -> bool:
    """True when `text` is a card textrec generated and nobody edited since (its stamp still matches)."""
    body, sep, tail = text.rpartition(f"\n{MARKER}")
    return bool(sep) and tail.strip() == f"{hashlib.sha256(body.encode()).hexdigest()} -->"


def model_card(config: dict) -> str:
    base = (config.get("base_encoder") or {}).get("name")
    front = {
        "library_name": "textrec",
        "tags": ["recommender-system", "two-tower", "textrec"] + (["lora", "peft"] if base else ["id-only"]),
    }
    if base:
        front["base_model"] = base
    if config.get("dataset"):
        front["datasets"] = [config["dataset"]]
    metrics = config.get("metrics") or {}
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    model = config["model"]
    item_tower = f"text through `{base}`" if base else "item ids only"
    if base and model.get("id_embedding"):
        item_tower += " + id embedding"
    versions = "\n".join(f"- {k}: {v}" for k, v in (config.get("framework_versions") or {}).items())
    return _stamp(f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# textrec two-tower recommender

Item tower: {item_tower}.
User tower: `{model["user_tower"]}`. Scores: {model["similarity"]} / temperature {model["temperature"]}.
Encoder training: `{model["train_mode"]}` (the base encoder is not stored here; only adapters and small heads).

## Usage

```python
from textrec.hub import load_pretrained

model, tokenizer, config = load_pretrained("path/to/this/folder")
```

## Evaluation

Protocol: {config.get("protocol", "n/a")}

| metric | value |
|---|---|
{rows}

## Framework versions

{versions}
""")
