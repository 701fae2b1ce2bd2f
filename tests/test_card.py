"""The model card (README.md): Hub metadata that parses back to the run's numbers, and a card the user edited is
kept on save and on push."""

import functools
import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from textrec.config import ModelConfig
from textrec.model.build import build_model
from textrec.model.card import is_generated_card, model_card
from textrec.model.hub import push_to_hub, save_pretrained

METRICS = {"test_ndcg@10": 0.0927, "test_recall@10": 0.1813, "test_mrr@20": 0.05, "test_n_events": 943}
EXTRA = {"dataset": "ml-100k", "protocol": "E1 leave-one-out, history masked"}


@pytest.fixture
def saved(tmp_path, tiny_bert):
    """(folder, save): a model on the `minilm` encoder (the tiny BERT stands in for its weights) saved with test
    metrics; `save(...)` saves it there again."""
    base, tok = tiny_bert
    cfg = ModelConfig(encoder="minilm", dim=16, max_history=10)
    model, tok = build_model(cfg, 4, base, tok)
    save = functools.partial(
        save_pretrained, model.eval(), tmp_path / "m", cfg, list("abcd"), tokenizer=tok, item_template="{title}"
    )
    save(metrics=METRICS, extra_config=EXTRA)
    return tmp_path / "m", save


class FakeApi:
    """Records what push_to_hub would upload; the Hub has no README.md yet."""

    def __init__(self):
        self.uploaded = {}

    def create_repo(self, repo_id, private=False, exist_ok=False):
        return f"https://huggingface.co/{repo_id}"

    def file_exists(self, repo_id, filename):
        return False

    def upload_folder(self, repo_id, folder_path, commit_message, ignore_patterns):
        self.uploaded = {p.name: p.read_text() for p in Path(folder_path).iterdir() if p.suffix in (".md", ".json")}


def test_card_metadata_is_valid_and_round_trips(saved):
    saved, _ = saved
    # ModelCard.validate() posts the card to the Hub's /api/validate-yaml: it needs the network. These are the
    # checks it can make offline: the front matter is YAML holding a mapping, model-index parses into EvalResults
    # (ModelCardData raises ValueError on a malformed one unless ignore_metadata_errors=True), base_model is a
    # well-formed repo id, and the metadata survives a write and a read.
    from huggingface_hub.utils import validate_repo_id

    card = ModelCard.load(saved / "README.md", ignore_metadata_errors=False)
    data = card.data
    assert data.library_name == "textrec" and data.datasets == ["ml-100k"]
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    validate_repo_id(data.base_model)
    assert {"textrec", "recommender-system", "lora", "peft"} <= set(data.tags)
    assert ModelCard(str(card), ignore_metadata_errors=False).data.to_dict() == data.to_dict()
    assert data.to_dict()["model-index"][0]["results"][0]["task"]["type"] == "recommendation"


def test_model_index_results_equal_the_configs_metrics(saved):
    saved, _ = saved
    config = json.loads((saved / "config.json").read_text())
    card = ModelCard.load(saved / "README.md")
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    expected = {k.removeprefix("test_"): v for k, v in config["metrics"].items() if k != "test_n_events"}
    assert results == expected and len(results) == 3
    assert all(r.dataset_name == "ml-100k" and r.metric_config == EXTRA["protocol"] for r in card.data.eval_results)


def test_card_lists_framework_versions_and_a_usage_snippet(saved):
    saved, _ = saved
    config = json.loads((saved / "config.json").read_text())
    text = (saved / "README.md").read_text()
    assert config["framework_versions"]["torch"] == torch.__version__
    assert f"- torch: {torch.__version__}" in text and "- peft: " in text
    assert 'Recommender.from_pretrained("path/to/this/folder"' in text


def test_push_writes_the_repo_id_into_a_generated_card(saved):
    saved, _ = saved
    api = FakeApi()
    push_to_hub(saved, "me/textrec-ml100k", api=api)
    card = api.uploaded["README.md"]
    assert is_generated_card(card)
    repo = "me/textrec-ml100k"  # only ever text in the card: nothing is loaded from a hub
    assert f'Recommender.from_pretrained("{repo}"' in card and f'TextRecModel.from_pretrained("{repo}")' in card
    assert ModelCard(card).data.library_name == "textrec"


def test_a_card_edited_with_model_card_is_kept_on_save_and_push(saved):
    saved, save = saved
    card = ModelCard.load(saved / "README.md")
    card.data.license = "mit"
    card.text = card.text.replace("# textrec two-tower recommender", "# Our movie recommender")
    card.save(saved / "README.md")
    edited = (saved / "README.md").read_text()
    assert not is_generated_card(edited)
    save(metrics={"test_ndcg@10": 0.5}, extra_config=EXTRA)
    assert (saved / "README.md").read_text() == edited  # not regenerated with the new metrics
    api = FakeApi()
    push_to_hub(saved, "me/x", api=api)
    assert api.uploaded["README.md"] == edited and (saved / "README.md").read_text() == edited
    assert json.loads((saved / "config.json").read_text())["metrics"] == {"test_ndcg@10": 0.5}  # the rest is saved


def test_base_model_is_a_hub_id_never_a_local_path(tmp_path):
    model = {"user_tower": "sequence", "similarity": "cosine", "temperature": 0.1, "train_mode": "lora"}

    def base_model(base_encoder):
        config = {"model": model, **({"base_encoder": base_encoder} if base_encoder else {})}
        return ModelCard(model_card(config)).data.base_model

    assert base_model({"name": "smollm2-135m"}) == "HuggingFaceTB/SmolLM2-135M-Instruct"  # an older config.json
    assert base_model({"name": "minilm", "hub_id": "sentence-transformers/all-MiniLM-L6-v2"})
    assert base_model({"name": str(tmp_path)}) is None  # trained on a local folder: no Hub id to name
    assert base_model(None) is None  # ID-only
    assert "id-only" in ModelCard(model_card({"model": model})).data.tags
