"""The downstream Recommender: recommendations, cold-start items, similar items, the cached index."""

import copy
import warnings

import pytest
import torch

from textrec.model.hub import load_pretrained, save_pretrained
from textrec.serve.recommender import Recommender, UnknownItemsError


@pytest.fixture
def recommender(trained_model_dir, _tiny_bert, tmp_path):
    out, items_path, _ = trained_model_dir
    return Recommender.from_pretrained(
        out, items_path, base=copy.deepcopy(_tiny_bert[0]), cache_dir=tmp_path, show_progress=False
    )


def _topic_history(data, word, n=6):
    return [i for i, t in zip(data.items["item_id"], data.items["topic"]) if t == word][:n]


def test_recommend_excludes_history_and_sorts(recommender, trained_model_dir):
    data = trained_model_dir[2]
    history = _topic_history(data, "alpha")
    recs = recommender.recommend(history, k=10)
    assert len(recs) == 10 and not set(history) & {i for i, _ in recs}
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    with_seen = recommender.recommend(history, k=10, exclude_seen=False)
    assert set(history) & {i for i, _ in with_seen}  # the model likes what the user already had
    topics = dict(zip(data.items["item_id"], data.items["topic"]))
    assert sum(topics[i] == "alpha" for i, _ in recs) >= 5  # the planted preference comes through


def test_batch_equals_single_and_free_text(recommender, trained_model_dir):
    data = trained_model_dir[2]
    histories = [_topic_history(data, "alpha"), _topic_history(data, "bravo", 3)]
    batch = recommender.recommend_batch(histories, k=5)
    for h, b in zip(histories, batch):
        single = recommender.recommend(h, k=5)
        assert [i for i, _ in single] == [i for i, _ in b]
        assert [s for _, s in single] == pytest.approx([s for _, s in b], abs=1e-5)
    assert len(recommender.recommend("alpha red item3", k=5)) == 5


def test_unknown_ids_empty_history_and_bad_k(recommender):
    with pytest.raises(UnknownItemsError) as err:
        recommender.recommend(["i1", "nope", "i2", "missing"], k=5)
    assert err.value.ids == ["nope", "missing"]
    with pytest.raises(ValueError, match="history is empty"):
        recommender.recommend([], k=5)
    with pytest.raises(ValueError, match="larger than the catalogue"):
        recommender.recommend(["i1"], k=10_000)


def test_new_item_added_by_text_is_recommended_to_a_matching_user(recommender, trained_model_dir):
    data = trained_model_dir[2]
    alpha_user, bravo_user = _topic_history(data, "alpha"), _topic_history(data, "bravo")
    new = [
        {"item_id": f"new-{topic}-{k}", "title": f"{topic} {fill} item{390 + k}", "topic": topic}
        for k, (topic, fill) in enumerate([(t, f) for t in ("alpha", "bravo") for f in ("red", "old", "calm")])
    ]
    added = recommender.add_items(new)
    assert added == [n["item_id"] for n in new] and len(recommender) == data.num_items + 6
    n = len(recommender)

    def mean_rank(history, topic):
        ranking = [i for i, _ in recommender.recommend(history, k=n - len(history))]
        return sum(ranking.index(i) for i in added if f"-{topic}-" in i) / 3

    # Cold items, never trained on, known by their text alone, go to the users whose history matches them.
    assert mean_rank(alpha_user, "alpha") < 10
    assert mean_rank(alpha_user, "alpha") < mean_rank(alpha_user, "bravo")
    assert mean_rank(bravo_user, "bravo") < mean_rank(bravo_user, "alpha")
    with pytest.raises(ValueError, match="already exists"):
        recommender.add_items([{"item_id": "new-alpha-0", "title": "x", "topic": "alpha"}])
    with pytest.raises(ValueError, match="missing field 'title'"):
        recommender.add_items([{"item_id": "other"}])


def test_similar_items(recommender, trained_model_dir):
    data = trained_model_dir[2]
    topics = dict(zip(data.items["item_id"], data.items["topic"]))
    similar = recommender.similar_items("i0", k=5)
    assert "i0" not in [i for i, _ in similar]
    assert sum(topics[i] == topics["i0"] for i, _ in similar) >= 3


def test_index_cache_is_reused_and_invalidated(trained_model_dir, _tiny_bert, tmp_path, monkeypatch):
    out, items_path, _ = trained_model_dir
    model_dir = tmp_path / "model"
    model, tok, config = load_pretrained(out, base=copy.deepcopy(_tiny_bert[0]))
    from textrec.config import ModelConfig

    cfg = ModelConfig(**config["model"])
    ids = __import__("json").loads((out / "item_ids.json").read_text())
    save_pretrained(model, model_dir, cfg, ids, tokenizer=tok, item_template=config["item_template"])
    cache = tmp_path / "cache"
    first = Recommender.from_pretrained(
        model_dir, items_path, base=copy.deepcopy(_tiny_bert[0]), cache_dir=cache, show_progress=False
    )
    assert len(list(cache.glob("item_index-*.safetensors"))) == 1

    def must_not_encode(*args, **kwargs):
        raise AssertionError("the cached index should have been used")

    with monkeypatch.context() as m:
        m.setattr(Recommender, "_encode_texts", must_not_encode)
        second = Recommender.from_pretrained(
            model_dir, items_path, base=copy.deepcopy(_tiny_bert[0]), cache_dir=cache, show_progress=False
        )
    assert torch.equal(first.item_vectors, second.item_vectors)
    with torch.no_grad():  # the adapter changes: the old cache must not be used
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    save_pretrained(model, model_dir, cfg, ids, tokenizer=tok, item_template=config["item_template"])
    third = Recommender.from_pretrained(
        model_dir, items_path, base=copy.deepcopy(_tiny_bert[0]), cache_dir=cache, show_progress=False
    )
    assert not torch.allclose(third.item_vectors, first.item_vectors)
    assert len(list(cache.glob("item_index-*.safetensors"))) == 2


def test_faiss_flat_matches_exact(trained_model_dir, _tiny_bert, tmp_path):
    pytest.importorskip("faiss")
    out, items_path, data = trained_model_dir
    exact = Recommender.from_pretrained(out, items_path, base=copy.deepcopy(_tiny_bert[0]), show_progress=False)
    flat = Recommender.from_pretrained(
        out, items_path, base=copy.deepcopy(_tiny_bert[0]), index="faiss-flat", show_progress=False
    )
    history = _topic_history(data, "charlie")
    assert [i for i, _ in exact.recommend(history, 10)] == [i for i, _ in flat.recommend(history, 10)]


def test_loading_a_recommender_raises_no_future_warning(trained_model_dir, _tiny_bert):
    out, items_path, _ = trained_model_dir
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Recommender.from_pretrained(out, items_path, base=copy.deepcopy(_tiny_bert[0]), show_progress=False)
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []


def test_text_user_tower_serves_a_long_history_as_evaluation_reads_it(tiny_bert):
    """The served user vector of a history longer than max_history_tokens is the evaluator's: the same HistoryText,
    truncated from the left (the most recent items survive), for item ids and for the same history as free text."""
    from textrec.config import ModelConfig
    from textrec.data.synthetic import make_synthetic
    from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors
    from textrec.model.build import history_text, item_tokens
    from textrec.model.encode import encode_histories
    from textrec.model.textrec_model import TextRecModel

    data = make_synthetic(num_users=20, num_items=30, seed=3)
    cfg = ModelConfig(encoder="tiny-bert", user_tower="text", dim=16, max_history=10, max_history_tokens=12)
    torch.manual_seed(0)
    model = TextRecModel.from_config(
        cfg, data.item_ids, item_template="{title}", base=tiny_bert[0], tokenizer=tiny_bert[1]
    )
    recommender = Recommender(model.eval(), data.items, show_progress=False, device="cpu")
    history = list(range(6))
    texts = list(data.items["title"])
    evaluator_text = history_text(texts, model.tokenizer, cfg)
    assert len(model.tokenizer(evaluator_text.render(history))["input_ids"]) > cfg.max_history_tokens  # truncated
    ids, _ = evaluator_text.tokenize([history])
    last_word = model.tokenizer(texts[history[-1]], add_special_tokens=False)["input_ids"][-1]
    assert last_word in ids[0].tolist()  # the most recent item survives the truncation
    tokens = item_tokens(texts, model.tokenizer, cfg, model.towers)
    vectors = compute_item_vectors(model.towers, compute_text_vectors(model.towers, tokens, desc=None))
    evaluated = encode_histories(model.towers, [history], vectors, evaluator_text)
    served = recommender.user_vectors([[data.item_ids[i] for i in history]])
    assert torch.equal(served, evaluated)
    as_free_text = recommender.user_vectors([evaluator_text.separator.join(texts[i] for i in history)])
    assert torch.equal(as_free_text, evaluated)
