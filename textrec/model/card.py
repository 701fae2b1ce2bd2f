"""The generated model card (README.md) of a saved textrec model."""

from __future__ import annotations

import hashlib
from pathlib import Path

MARKER = "<!-- textrec-generated-card sha256:"


def _stamp(body: str) -> str:
    return f"{body}\n{MARKER}{hashlib.sha256(body.encode()).hexdigest()} -->\n"


def is_generated_card(text: str) -> bool:
    """True when `text` is a card textrec generated and nobody edited since (its stamp still matches)."""
    body, sep, tail = text.rpartition(f"\n{MARKER}")
    return bool(sep) and tail.strip() == f"{hashlib.sha256(body.encode()).hexdigest()} -->"


def base_model_id(config: dict) -> str | None:
    """The base encoder's Hub id as recorded in config.json (older folders: mapped from its name); None for an
    ID-only model or a base encoder loaded from a local folder, which has no Hub id."""
    from textrec.model.encoders import hub_id

    base = config.get("base_encoder") or {}
    if "hub_id" in base:
        return base["hub_id"]
    name = base.get("name")
    return None if name is None or Path(name).is_dir() else hub_id(name)


def card_data(config: dict):
    """The card's metadata as `huggingface_hub.ModelCardData`: library, canonical base model, dataset, tags and a
    model-index with the run's test metrics."""
    from huggingface_hub import EvalResult, ModelCardData

    base = base_model_id(config)
    dataset = config.get("dataset")
    results = [
        EvalResult(
            task_type="recommendation",
            task_name="Next-item recommendation (full ranking)",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="test",
            metric_type=name.removeprefix("test_").replace("@", "_at_"),
            metric_name=name.removeprefix("test_"),
            metric_value=value,
            metric_config=config.get("protocol"),
        )
        for name, value in (config.get("metrics") or {}).items()
        if dataset and isinstance(value, (int, float)) and name != "test_n_events"
    ]
    text = "base_encoder" in config
    tags = ["recommender-system", "two-tower", "textrec"]
    if not text:
        tags.append("id-only")
    elif config["model"].get("train_mode") == "lora":
        tags += ["lora", "peft"]
    return ModelCardData(
        library_name="textrec",
        base_model=base,
        datasets=[dataset] if dataset else None,
        tags=tags,
        eval_results=results or None,
        model_name=config.get("model_name") or "textrec two-tower recommender",
    )


def model_card(config: dict, repo_id: str | None = None) -> str:
    """The generated README.md: metadata (`card_data`) and a body with a usage snippet for `repo_id`."""
    from huggingface_hub import ModelCard

    data = card_data(config)
    base = config.get("base_encoder")
    metrics = config.get("metrics") or {}
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    model = config["model"]
    item_tower = f"text through `{data.base_model or base['name']}`" if base else "item ids only"
    if base and model.get("id_embedding"):
        item_tower += " + id embedding"
    versions = "\n".join(f"- {k}: {v}" for k, v in (config.get("framework_versions") or {}).items()) or "n/a"
    where = repo_id or "path/to/this/folder"
    body = f"""---
{{{{ card_data }}}}
---

# textrec two-tower recommender

Item tower: {item_tower}.
User tower: `{model["user_tower"]}`. Scores: {model["similarity"]} / temperature {model["temperature"]}.
Encoder training: `{model["train_mode"]}` (the base encoder is not stored here; only adapters and small heads).
Item text template: `{config.get("item_template")}`.

## Usage

```python
from textrec import Recommender, TextRecModel

rec = Recommender.from_pretrained("{where}", "items.csv")  # your catalogue, with the template's fields
rec.recommend(["item-1", "item-2"], k=10)  # item ids, oldest first

model = TextRecModel.from_pretrained("{where}")  # the model itself: towers, config, tokenizer, item template
```

## Evaluation

Protocol: {config.get("protocol", "n/a")}

| metric | value |
|---|---|
{rows}

## Framework versions

{versions}
"""
    return _stamp(str(ModelCard.from_template(data, template_str=body)).rstrip("\n") + "\n")
