"""Encoders, pooling, towers, losses and the cached/live item-vector optimisation."""

import numpy as np
import pytest
import torch

from textrec.config import ModelConfig
from textrec.evaluate.ranking import compute_text_vectors
from textrec.model.build import build_model, item_tokens
from textrec.model.encoders import apply_train_mode, pool
from textrec.model.towers import SequenceTower
from textrec.train.losses import InBatchSoftmaxLoss, log_sampling_probability
from textrec.train.objectives import TextVectorCache, TrainingObjective


def test_pooling_modes_and_padding_sides():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert torch.equal(pool(hidden, right, "cls"), hidden[:, 0])
    assert torch.equal(pool(hidden, right, "last"), torch.stack([hidden[0, 2], hidden[1, 1]]))
    assert torch.equal(pool(hidden, left, "last"), hidden[:, 3])
    assert torch.allclose(pool(hidden, right, "mean")[1], hidden[1, :2].mean(0))
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, right, "max")


def test_decoder_last_token_pooling_ignores_padding_side(tiny_llama):
    base, tok = tiny_llama
    model, tok = build_model(ModelConfig(encoder="tiny", train_mode="frozen"), 10, base, tok)
    assert model.item_encoder.pooling == "last"
    texts = ["alpha red item1 </s>", "bravo item2 </s>"]
    vectors = {}
    for side in ("left", "right"):
        tok.padding_side = side
        enc = tok(texts, padding=True, return_tensors="pt")
        vectors[side] = model.item_text_vectors(enc["input_ids"], enc["attention_mask"])
    assert torch.allclose(vectors["left"], vectors["right"], atol=1e-5)


def test_lora_trains_adapters_only(tiny_bert):
    base, _ = tiny_bert
    peft_model = apply_train_mode(base, "lora", lora_r=4)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("query" in n for n in trainable) and any("value" in n for n in trainable)  # peft's bert default


def test_top_layers_mode(tiny_bert):
    base, _ = tiny_bert
    model = apply_train_mode(base, "top_layers", top_layers=1)
    trainable = {n.split(".")[2] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"1"}
    with pytest.raises(ValueError, match="top_layers"):
        apply_train_mode(base, "top_layers", top_layers=5)


def test_sequence_tower_is_causal_and_padding_invariant():
    torch.manual_seed(0)
    tower = SequenceTower(dim=8, max_len=6, layers=2, heads=2, dropout=0.0).eval()
    x = torch.randn(1, 5, 8)
    mask = torch.ones(1, 5, dtype=torch.bool)
    out = tower(x, mask)
    changed = x.clone()
    changed[0, 4] = torch.randn(8)
    assert torch.allclose(tower(changed, mask)[0, :4], out[0, :4], atol=1e-6)  # the future does not leak
    padded = torch.cat([torch.zeros(1, 1, 8), x], dim=1)
    pmask = torch.cat([torch.zeros(1, 1, dtype=torch.bool), mask], dim=1)
    pout = tower(padded, pmask)
    assert not torch.isnan(pout).any()
    assert torch.allclose(pout[0, -1], out[0, -1], atol=1e-5)  # left padding changes nothing


def test_logq_correction_and_accidental_hits():
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.3, 2.0, 1.0]])
    candidates = torch.tensor([7, 8, 7])  # item 7 appears twice: column 2 is an accidental hit for row 0
    targets = torch.tensor([7, 8])
    columns = torch.tensor([0, 1])
    log_q = torch.log(torch.tensor([0.5, 0.25, 0.25]))
    loss = InBatchSoftmaxLoss()(logits, columns, candidates, targets, log_q)
    corrected = logits - log_q
    row0 = -torch.log_softmax(corrected[0, :2], 0)[0]  # column 2 masked
    row1 = -torch.log_softmax(corrected[1], 0)[1]
    assert loss.item() == pytest.approx(((row0 + row1) / 2).item(), rel=1e-5)
    plain = InBatchSoftmaxLoss()(logits, columns, candidates, targets, None)
    assert plain.item() != pytest.approx(loss.item())


def test_distinct_candidates_skip_the_hit_mask_and_equal_plain_cross_entropy():
    """With distinct candidates the row's item is only in its labelled column: the loss is the plain corrected
    cross-entropy, and a column that repeats an item still gets masked."""
    torch.manual_seed(0)
    logits, log_q = torch.randn(5, 6), torch.randn(6)
    candidates, columns = torch.tensor([3, 9, 1, 4, 7, 2]), torch.tensor([0, 2, 2, 5, 1])
    loss = InBatchSoftmaxLoss()(logits, columns, candidates, candidates[columns], log_q)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits - log_q, columns).item(), rel=1e-6)
    repeated = torch.tensor([3, 9, 1, 4, 7, 3])  # column 5 repeats row 0's item 3
    masked = InBatchSoftmaxLoss()(logits, columns, repeated, repeated[columns], log_q)
    assert masked.item() != pytest.approx(loss.item())


def test_score_folds_temperature_bias_and_offset_into_one_product():
    from textrec.model.towers import TwoTowerModel

    torch.manual_seed(0)
    model = TwoTowerModel(num_items=12, dim=8, id_embedding=True, max_history=5, item_bias=True, temperature=0.07)
    with torch.no_grad():
        model.item_bias.normal_()
    users, ids, offset = torch.randn(4, 8), torch.tensor([0, 3, 5, 11]), torch.randn(4)
    items = model.item_vectors(ids)
    u, v = torch.nn.functional.normalize(users, dim=-1), torch.nn.functional.normalize(items, dim=-1)
    expected = u @ v.T / 0.07 + model.item_bias[ids] + offset
    assert torch.allclose(model.score(users, items, ids, offset), expected, atol=1e-5)
    assert torch.allclose(model.score(users, items), u @ v.T / 0.07, atol=1e-5)


def test_log_sampling_probability_is_monotone_in_popularity():
    freq = torch.tensor([0.7, 0.2, 0.1])
    lq = log_sampling_probability(torch.tensor([0, 1, 2]), freq, positions=10, uniform=3)
    assert lq[0] > lq[1] > lq[2]
    assert (lq <= 0).all()  # a probability, never the expected count 10 * 0.7 = 7


def test_log_sampling_probability_is_the_inclusion_probability_by_hand():
    """q_j = 1 - (1 - p_j)^P (1 - 1/N)^U, hand-computed for P=3 popularity draws and U=2 uniform draws, N=4."""
    freq = torch.tensor([0.5, 0.25, 0.25, 0.0])
    lq = log_sampling_probability(torch.tensor([0, 1, 3]), freq, positions=3, uniform=2)
    expected = [1 - 0.5**3 * 0.75**2, 1 - 0.75**3 * 0.75**2, 1 - 1.0 * 0.75**2]  # 0.9297, 0.7627, 0.4375
    assert torch.allclose(lq.exp(), torch.tensor(expected), atol=1e-6)
    without_uniform = log_sampling_probability(torch.tensor([0, 1]), freq, positions=3, uniform=0)
    assert torch.allclose(without_uniform.exp(), torch.tensor([0.875, 1 - 0.75**3]), atol=1e-6)
    count = log_sampling_probability(torch.tensor([0, 1, 3]), freq, positions=3, uniform=2, kind="expected_count")
    assert torch.allclose(count.exp(), torch.tensor([3 * 0.5 + 0.5, 3 * 0.25 + 0.5, 0.5]), atol=1e-6)
    with pytest.raises(ValueError, match="logq"):
        log_sampling_probability(torch.tensor([0]), freq, positions=3, uniform=0, kind="bogus")


def test_live_encoding_matches_a_fresh_cache(tiny_bert):
    """The optimisation (cached vectors + a live subset) equals encoding every item live when the cache is fresh."""
    base, tok = tiny_bert
    cfg = ModelConfig(encoder="tiny", id_embedding=True, dim=16, lora_dropout=0.0, max_history=10)
    model, tok = build_model(cfg, 30, base, tok)
    tokens = item_tokens([f"alpha item{i}" for i in range(30)], tok, cfg, model)
    objective = TrainingObjective(model, tokens, torch.ones(30)).configure(max_live_items=5)
    cache = TextVectorCache()
    cache.refresh(compute_text_vectors(model, tokens, batch_size=7, desc=None), step=0)
    model.eval()  # no dropout, so live and cached text vectors agree
    objective.training = True  # but take the live-encoding path
    ids = torch.tensor([3, 5, 5, 9, 12, 20, 21])
    mixed = objective.item_vectors(ids, cache, np.random.default_rng(0))
    assert mixed.requires_grad  # some came live, with gradient into LoRA
    cached = model.item_vectors(ids, cache.vectors[ids])
    assert torch.allclose(mixed, cached, atol=1e-5)


def test_decoder_item_text_ends_with_eos_even_when_truncated():
    from conftest import build_tokenizer

    from textrec.data.text import tokenize_texts

    tok = build_tokenizer("llama")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    long_text = " ".join(["alpha bravo charlie"] * 20)
    ds = tokenize_texts(["alpha", long_text], tok, max_length=8, append_eos=True)
    short, truncated = ds["input_ids"]
    assert short[-1] == tok.eos_token_id and short == tok("alpha" + tok.eos_token)["input_ids"]
    assert len(truncated) == 8 and truncated[-1] == tok.eos_token_id
    plain = tokenize_texts([long_text], tok, max_length=8)["input_ids"][0]
    assert len(plain) == 8 and plain[:7] == truncated[:7]


def test_learned_temperature_trains_is_floored_and_round_trips():
    from textrec.model.towers import MIN_TEMPERATURE, TwoTowerModel

    torch.manual_seed(0)
    model = TwoTowerModel(num_items=20, dim=8, id_embedding=True, max_history=5, learn_temperature=True)
    assert abs(float(model.temperature.detach()) - 0.05) < 1e-6
    users, items = torch.randn(4, 8), model.id_embedding.weight
    loss = torch.nn.functional.cross_entropy(model.score(users, items), torch.arange(4))
    (grad,) = torch.autograd.grad(loss, [model.log_temperature])
    assert grad.abs() > 0
    with torch.no_grad():
        model.log_temperature.fill_(-10.0)
    assert float(model.temperature.detach()) == pytest.approx(MIN_TEMPERATURE)
    other = TwoTowerModel(num_items=20, dim=8, id_embedding=True, max_history=5, learn_temperature=True)
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.score(users, items), model.score(users, items))
    fixed = TwoTowerModel(num_items=20, dim=8, id_embedding=True, max_history=5)
    assert fixed.temperature == 0.05 and "log_temperature" not in fixed.state_dict()


def test_seq_position_std_sets_the_position_init_and_is_checked():
    from textrec.config import ModelConfig
    from textrec.model.build import build_model

    torch.manual_seed(0)
    default, _ = build_model(ModelConfig(encoder=None, id_embedding=True, max_history=200), 30)
    torch_init, _ = build_model(
        ModelConfig(encoder=None, id_embedding=True, max_history=200, seq_position_std=None), 30
    )
    assert float(default.sequence.positions.weight.detach().std()) == pytest.approx(0.02, rel=0.1)
    assert float(torch_init.sequence.positions.weight.detach().std()) == pytest.approx(1.0, rel=0.1)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="model.seq_position_std"):
            ModelConfig(encoder=None, id_embedding=True, seq_position_std=bad)
