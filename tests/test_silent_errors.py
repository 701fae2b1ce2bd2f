"""No silent wrong answers (issue 24): out-of-range options, a diverged run, NaN scores, a stale index after a
tokenizer edit, nanosecond timestamps, mixed-type JSON ids and the dataset name a run records are each refused or kept
exact."""

import copy
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import textrec.train.loop as engine
from textrec.config import DataConfig, ModelConfig
from textrec.data import DataError, load_data, load_tabular
from textrec.data.features import all_targets
from textrec.data.splits import leave_one_out, time_cut
from textrec.data.synthetic import make_synthetic
from textrec.model.build import build_model
from textrec.model.textrec_model import TextRecModel
from textrec.serve.batch import BatchRequest, read_requests, recommend_requests
from textrec.serve.recommender import Recommender
from textrec.train.config import LoopConfig, TrainingConfig
from textrec.train.loop import WindowExamples, fit, make_accelerator
from textrec.train.objectives import TrainingObjective

ROOT = Path(__file__).resolve().parents[1]


# ----- 1. range checks: each field refused by name -----
@pytest.mark.parametrize(
    "section, field, value",
    [
        (LoopConfig, "eval_every_steps", -2),
        (LoopConfig, "checkpoint_every", -1),
        (LoopConfig, "patience", -3),
        (LoopConfig, "warmup_steps", -10),
        (LoopConfig, "max_live_items", -1),
        (LoopConfig, "global_batch_size", -64),
        (LoopConfig, "full_softmax_items", -1),
        (LoopConfig, "cache_refresh_steps", -5),
        (TrainingConfig, "eval_every_steps", -2),
        (TrainingConfig, "targets_per_user", 0),
        (ModelConfig, "lora_alpha", -16),
    ],
)
def test_out_of_range_options_are_refused_naming_the_field(section, field, value):
    prefix = "model" if section is ModelConfig else "training"
    with pytest.raises(ValueError, match=rf"^{prefix}\.{field}: must be >= [01]"):
        section(**{field: value})


def test_zero_keeps_its_meaning_where_it_has_one():
    LoopConfig(eval_every_steps=0, checkpoint_every=0, warmup_steps=0, max_live_items=0, global_batch_size=0)
    with pytest.raises(ValueError, match="training.patience: must be >= 1"):
        LoopConfig(patience=0)


# ----- 2. NaN: training stops, recommend and the batch CLI never answer NaN -----
DATA = make_synthetic(num_users=40, num_items=30, seed=5)
SPLIT = leave_one_out(DATA)


def _id_only_fit(tmp_path, loop: LoopConfig, poison=None):
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=None, id_embedding=True, dim=8, max_history=10, seq_layers=1)
    model, _ = build_model(cfg, DATA.num_items)
    if poison is not None:
        poison(model)
    objective = TrainingObjective(model, None, torch.ones(DATA.num_items))
    examples = WindowExamples(all_targets(SPLIT.train), 10)
    fit(objective, examples, loop, make_accelerator(loop), checkpoint_dir=tmp_path / "ckpt")
    return model


def _nan_weight(model):
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))


def test_a_non_finite_loss_stops_training_naming_the_step_and_saves_nothing(tmp_path):
    loop = LoopConfig(seed=0, epochs=2, batch_size=16, checkpoint_every=1, progress=False)
    with pytest.raises(FloatingPointError, match=r"loss is nan at optimizer step 1 \(epoch 0\).*lower learning rate"):
        _id_only_fit(tmp_path, loop, poison=_nan_weight)
    assert not list((tmp_path / "ckpt").glob("step_*")), "a non-finite model was checkpointed"


def test_a_loss_that_goes_non_finite_later_names_that_step(tmp_path, monkeypatch):
    real = engine._Loop.micro_step

    def diverging(self, batch, bar):  # the loss of the third optimizer step is infinite
        if self.state.global_step == 2:
            monkeypatch.setattr(self.objective, "forward", lambda **kw: torch.tensor(float("inf"), requires_grad=True))
        return real(self, batch, bar)

    monkeypatch.setattr(engine._Loop, "micro_step", diverging)
    loop = LoopConfig(seed=0, epochs=2, batch_size=16, checkpoint_every=1, progress=False)
    with pytest.raises(FloatingPointError, match="loss is inf at optimizer step 3"):
        _id_only_fit(tmp_path, loop)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step_*")) == ["step_1", "step_2"]


def test_non_finite_trained_weights_are_never_returned(tmp_path, monkeypatch):
    real = engine._Loop.optimizer_step

    def blowing_up(self):  # an update that overflows the weights (lr=1e30), on the run's last step
        real(self)
        _nan_weight(self.model)

    monkeypatch.setattr(engine._Loop, "optimizer_step", blowing_up)
    loop = LoopConfig(seed=0, epochs=1, max_steps=1, batch_size=16, checkpoint_every=0, progress=False)
    with pytest.raises(FloatingPointError, match="trained weights hold NaN or infinite values after 1 optimizer"):
        _id_only_fit(tmp_path, loop)


@pytest.fixture
def text_model(tiny_bert, tmp_path):
    """A tiny text model saved and loaded back (so it knows its folder), with its catalogue."""
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="tiny-bert", dim=16, max_history=10, seq_layers=1, lora_r=4)
    model = TextRecModel.from_config(
        cfg, DATA.item_ids, item_template="{title}", base=copy.deepcopy(tiny_bert[0]), tokenizer=tiny_bert[1]
    )
    model.save_pretrained(tmp_path / "model")
    return TextRecModel.from_pretrained(tmp_path / "model", base=copy.deepcopy(tiny_bert[0])).eval()


def test_a_model_with_nan_weights_is_refused_before_it_serves(text_model):
    with torch.no_grad():
        text_model.towers.item_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"model .*model: weight .*item_proj.weight holds NaN or infinite values"):
        Recommender(text_model, DATA.items, show_progress=False, device="cpu")


def test_recommend_never_returns_a_nan_score(text_model, monkeypatch):
    recommender = Recommender(text_model, DATA.items, show_progress=False, device="cpu")
    history = DATA.item_ids[:3]
    assert all(math.isfinite(s) for _, s in recommender.recommend(history, k=5))
    nan_users = lambda users: torch.full_like(users, float("nan"))  # noqa: E731 (a user tower gone bad)
    monkeypatch.setattr(text_model, "score_queries", nan_users)
    with pytest.raises(ValueError, match=r"history 0 of the batch scores item .* nan \(not a finite number\)"):
        recommender.recommend(history, k=5)


def test_the_batch_cli_never_writes_a_nan_score(text_model, monkeypatch, tmp_path):
    recommender = Recommender(text_model, DATA.items, show_progress=False, device="cpu")
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps({"user_id": "u", "history": DATA.item_ids[:3]}) + "\n")
    requests = read_requests(path)
    monkeypatch.setattr(text_model, "score_queries", lambda users: torch.full_like(users, float("nan")))
    with pytest.raises(ValueError, match=r"requests\.jsonl, line 1.*not a finite number"):
        recommend_requests(recommender, requests, k=3, progress=False)


def test_the_batch_runner_checks_every_score_itself(text_model):
    class Stub:  # any recommender: its scores are checked before an answer is kept
        model, positions = text_model, {"a": 0}

        def __len__(self):
            return 5

        def recommend_batch(self, histories, k, exclude_seen):
            return [[("a", float("nan"))] for _ in histories]

    request = BatchRequest("requests.jsonl, line 4", ["a"], None, {})
    with pytest.raises(ValueError, match=r"line 4: item 'a' scores nan, not a finite number"):
        recommend_requests(Stub(), [request], k=1, progress=False)


# ----- 3. the tokenizer is part of the item index's cache key -----
def test_editing_the_tokenizer_invalidates_the_cached_index(text_model, tiny_bert, tmp_path):
    folder, cache = text_model.folder, tmp_path / "cache"
    first = Recommender(text_model, DATA.items, cache_dir=cache, show_progress=False, device="cpu")
    text_model.tokenizer("alpha red", truncation=True, max_length=3, padding="max_length")  # a call's settings
    assert Recommender(text_model, DATA.items, cache_dir=cache, show_progress=False).cache_key() == first.cache_key()
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text())
    vocab = tokenizer_json["model"]["vocab"]
    vocab["alpha"], vocab["bravo"] = vocab["bravo"], vocab["alpha"]  # the same files, other ids for two words
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    edited = TextRecModel.from_pretrained(folder, base=copy.deepcopy(tiny_bert[0])).eval()
    second = Recommender(edited, DATA.items, cache_dir=cache, show_progress=False, device="cpu")
    assert second.cache_key() != first.cache_key()
    assert len(list(cache.glob("item_index-*.safetensors"))) == 2
    assert not torch.equal(second.item_vectors, first.item_vectors)  # the vectors of the edited tokenizer


# ----- 4. integer nanosecond timestamps stay exact -----
NS = 1_700_000_000_000_000_000  # 2023 in nanoseconds: float64 cannot tell NS, NS + 1 and NS + 2 apart
ITEMS_CSV = "item_id,title\n1,one\n2,two\n3,three\n"


def _events(tmp_path, rows, suffix):
    path = tmp_path / f"events{suffix}"
    if suffix == ".csv":
        path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"user_id": u, "item_id": i, "timestamp": t}) + "\n" for u, i, t in rows))
    else:
        columns = dict(zip(("user_id", "item_id", "timestamp"), map(list, zip(*rows))))
        pq.write_table(pa.table({**columns, "timestamp": pa.array(columns["timestamp"], pa.int64())}), path)
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    return load_tabular(path, tmp_path / "items.csv")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_nanosecond_timestamps_keep_their_order(tmp_path, suffix):
    data = _events(tmp_path, [("u1", "3", NS + 2), ("u1", "1", NS), ("u1", "2", NS + 1)], suffix)  # unsorted
    assert data.interactions["timestamp"] == [NS + 2, NS, NS + 1]
    assert data.arrays.timestamps.dtype.kind == "i"
    split = leave_one_out(data)
    index = data.item_index
    assert split.test[0].target == index["3"] and split.valid[0].target == index["2"]  # in float64: "2" and "1"
    assert split.test[0].history == (index["1"], index["2"])
    before, after = time_cut(data, fraction=0.6)
    assert before.interactions["timestamp"] == [NS, NS + 1] and after.interactions["timestamp"] == [NS + 2]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_events_a_nanosecond_apart_are_not_duplicates(tmp_path, suffix):
    data = _events(tmp_path, [("u1", "1", NS), ("u1", "1", NS + 1)], suffix)
    assert data.interactions["timestamp"] == [NS, NS + 1]
    with pytest.raises(DataError, match=rf"duplicate interaction \(user 'u1', item '1', timestamp {NS + 1}\)"):
        _events(tmp_path, [("u1", "1", NS + 1), ("u1", "1", NS + 1)], suffix)


def test_fractional_and_parquet_timestamps(tmp_path):
    data = _events(tmp_path, [("u1", "1", 1.5), ("u1", "2", 2)], ".jsonl")
    assert data.interactions["timestamp"] == [1.5, 2.0]  # not all integers: float64, as before
    stamps = pa.array([NS, NS + 1], pa.timestamp("ns"))
    pq.write_table(pa.table({"user_id": ["u", "u"], "item_id": ["1", "2"], "timestamp": stamps}), tmp_path / "t.pq")
    (tmp_path / "t.pq").rename(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="t.parquet: column 'timestamp': timestamps .* store them as an integer"):
        load_tabular(tmp_path / "t.parquet", tmp_path / "items.csv")


# ----- 5. JSON-lines ids are written one way -----
@pytest.mark.parametrize(
    "ids, message",
    [
        ([1, "1"], r"events\.jsonl, line 2: field 'user_id': the id '1' is text, but .*line 1 has an integer \(1\)"),
        ([1, 1.0], r"line 2: field 'user_id': the id 1.0 is a decimal number, but .*line 1 has an integer"),
        (["1", 1.0], r"line 2: field 'user_id': the id 1.0 is a decimal number, but .*line 1 has text"),
        ([{"id": 1}, "2"], r"events\.jsonl, line 1: field 'user_id' is an object, not an id"),
        (["u1", True], r"events\.jsonl, line 2: field 'user_id' is a boolean, not an id: True"),
        (["u1", [1]], r"line 2: field 'user_id' is a list, not an id"),
    ],
)
def test_json_lines_ids_of_mixed_types_are_refused_naming_the_line(tmp_path, ids, message):
    rows = [(u, "1", t) for t, u in enumerate(ids)]
    with pytest.raises(DataError, match=message):
        _events(tmp_path, rows, ".jsonl")


def test_json_lines_ids_of_one_type_still_load(tmp_path):
    assert _events(tmp_path, [(1, "1", 0), (2, "2", 1)], ".jsonl").interactions["user_id"] == ["1", "2"]
    item_ids = _events(tmp_path, [("u", 1, 0), ("u", 2, 1)], ".jsonl").interactions["item_id"]
    assert item_ids == ["1", "2"]  # integer ids match the catalogue's text ids, as before


# ----- 6. the dataset name comes from what was loaded -----
def test_the_dataset_name_is_what_was_loaded(tmp_path):
    from textrec.data import dataset_name

    synthetic = DataConfig(format="synthetic")  # data.path keeps its default, data/ml-100k
    assert dataset_name(synthetic, load_data(synthetic)) == "synthetic"
    data = _events(tmp_path, [("u1", "1", 0)], ".csv")
    assert dataset_name(DataConfig(format="tabular", path="x", items_path="y"), data) == "events.csv"
    sliced = data.select_interactions([0])
    assert dataset_name(DataConfig(), sliced) == "events.csv"


def test_the_recipes_record_the_loaded_name():
    for recipe in ("train", "adversarial_fgsm", "domain_transfer"):
        source = (ROOT / "recipes" / f"{recipe}.py").read_text()
        assert "dataset_name(data_cfg, data)" in source and "Path(data_cfg.path).name" not in source, recipe
