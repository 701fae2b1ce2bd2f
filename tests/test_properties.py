"""Property-based tests (hypothesis): whatever the input, loaders, config overrides and HTTP bodies give a result or
a clear error (DataError / ValueError naming the place, or a 4xx), never an unhandled exception."""

import copy
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textrec.config import DataConfig, ModelConfig, load_config
from textrec.data import DataError, load_tabular
from textrec.train.loop import LoopConfig

EXAMPLES = 150  # per property; 4 properties: 600 generated inputs in all
CELL = st.one_of(
    st.text(alphabet=string.printable + "é\u00a0\ufeff", max_size=12),
    st.sampled_from(["inf", "-inf", "nan", "1e400", "", "1", "2.5", "true", '"', '""', "a,b", "\n"]),
)


def _csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n\r') else value


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(st.sampled_from(["user_id", "item_id", "timestamp", "rating", "x"]), min_size=1, max_size=5),
    rows=st.lists(st.lists(CELL, min_size=1, max_size=6), max_size=6),
)
def test_any_interactions_csv_loads_or_fails_clearly(tmp_path_factory, header, rows):
    folder = tmp_path_factory.mktemp("csv")
    (folder / "items.csv").write_text("item_id,title\n1,One\n2,Two\n")
    lines = [",".join(header)] + [",".join(_csv_field(c) for c in row) for row in rows]
    (folder / "events.csv").write_text("\n".join(lines) + "\n")
    try:
        data = load_tabular(folder / "events.csv", folder / "items.csv")
    except DataError as err:
        assert "events.csv" in str(err) or "items.csv" in str(err), err
    else:
        assert len(data.interactions) == len([r for r in rows if any(r)])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(
        st.dictionaries(
            st.sampled_from(["user_id", "item_id", "timestamp"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
            max_size=3,
        ),
        max_size=5,
    )
)
def test_any_jsonl_records_load_or_fail_clearly(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("jsonl")
    (folder / "items.csv").write_text("item_id,title\n1,One\n2,Two\n")
    (folder / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    try:
        load_tabular(folder / "events.jsonl", folder / "items.csv")
    except DataError as err:
        assert "events.jsonl" in str(err) or "items.csv" in str(err), err


FIELDS = [
    "data.format",
    "data.synthetic_users",
    "data.item_template",
    "model.dim",
    "model.temperature",
    "model.encoder",
    "training.lr",
    "training.epochs",
    "training.scheduler",
    "nosuch.x",
    "model.nosuch",
]


@settings(max_examples=EXAMPLES, deadline=None)
@given(overrides=st.lists(st.tuples(st.sampled_from(FIELDS), st.text(max_size=15)), max_size=4))
def test_any_overrides_give_a_config_or_a_value_error(overrides):
    args = [f"{key}={value}" for key, value in overrides]
    try:
        load_config({"data": DataConfig, "model": ModelConfig, "training": LoopConfig}, None, args)
    except ValueError as err:
        assert str(err)


JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def client(trained_model_dir, _tiny_bert):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from textrec.serve.app import create_app
    from textrec.serve.recommender import Recommender

    out, items_path, _ = trained_model_dir
    rec = Recommender.from_pretrained(out, items_path, base=copy.deepcopy(_tiny_bert[0]), show_progress=False)
    return TestClient(create_app(rec, api_key="k"), raise_server_exceptions=False)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/recommend", "/items", "/similar"]),
    body=st.one_of(
        JSON,
        st.fixed_dictionaries({"history": JSON}, optional={"k": JSON, "exclude_seen": JSON}),
        st.fixed_dictionaries(
            {
                "items": st.lists(
                    st.dictionaries(st.sampled_from(["item_id", "title", "topic"]), st.text(max_size=10)), max_size=3
                )
            }
        ),
        st.fixed_dictionaries({"item_id": st.text(max_size=6)}, optional={"k": JSON}),
    ),
)
def test_any_http_body_gets_an_answer_never_a_5xx(client, path, body):
    response = client.post(path, json=body, headers={"x-api-key": "k"})
    assert response.status_code < 500, (path, body, response.text)
    if response.status_code >= 400:
        assert response.json()["detail"]
