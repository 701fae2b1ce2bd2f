import math

import pytest
import torch

from textrec.evaluate.metrics import metrics_from_ranks, rating_errors, target_ranks


def test_ranks_hand_computed():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.4, 0.4, 0.4, 0.4], [1.0, 2.0, 3.0, float("nan")]])
    targets = torch.tensor([2, 0, 3])
    # row 0: only 0.9 beats 0.5 -> rank 1; row 1: all tie -> pessimistic, last (3); row 2: NaN target -> last
    assert target_ranks(scores, targets).tolist() == [1, 3, 3]


def test_masked_items_do_not_count_and_target_is_never_masked():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    masked = torch.tensor([[True, True, True, False]])  # the target (2) is in the mask: it must still be ranked
    assert target_ranks(scores, torch.tensor([2]), masked).tolist() == [0]
    assert target_ranks(scores, torch.tensor([3]), masked).tolist() == [0]


def test_metrics_hand_computed():
    m = metrics_from_ranks([0, 1, 9, 10, 25], ks=(10, 20))
    assert m["n_events"] == 5
    assert m["recall@10"] == pytest.approx(3 / 5)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(11)) / 5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 5)
    assert m["recall@20"] == pytest.approx(4 / 5)
    assert m["ndcg@20"] == pytest.approx(m["ndcg@10"] + 1 / math.log2(12) / 5)


def test_rating_errors():
    out = rating_errors([3.0, 5.0], [4.0, 5.0])
    assert out["rmse"] == pytest.approx(math.sqrt(0.5))
    assert out["mae"] == pytest.approx(0.5)


def test_content_similarity_baseline_hand_computed():
    from textrec.data.splits import EvalEvent
    from textrec.evaluate.ranking import evaluate_content_similarity

    # items 0,1 point east, 2 north-east, 3 north; a user who saw item 0 is closest to 1, then 2, then 3
    vectors = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    near = EvalEvent(user=0, history=(0,), target=1)
    far = EvalEvent(user=0, history=(0,), target=3)
    assert evaluate_content_similarity(vectors, [near], ks=(10,))["ndcg@10"] == 1.0  # item 0 is masked out
    unmasked = evaluate_content_similarity(vectors, [far], mask_history=False, ks=(10,))
    assert unmasked["ndcg@10"] == pytest.approx(1 / math.log2(5))  # behind 0, 1 and 2
    # only the last `last` items count: after 3 then 0, with last=1 the user looks east
    recent = EvalEvent(user=0, history=(3, 0), target=1)
    assert evaluate_content_similarity(vectors, [recent], last=1, ks=(10,))["ndcg@10"] == 1.0


def test_ndcg_per_event_and_paired_bootstrap_hand_computed():
    from textrec.evaluate.metrics import ndcg_per_event, paired_bootstrap

    assert ndcg_per_event([0, 1, 9, 10]).tolist() == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0])
    a = torch.tensor([1.0, 0.5, 0.0, 0.25])
    same = paired_bootstrap(a, a)
    assert same["mean_difference"] == 0 and same["difference_low"] == same["difference_high"] == 0
    assert same["ratio"] == same["ratio_low"] == same["ratio_high"] == pytest.approx(1.0)
    shifted = paired_bootstrap(a + 0.1, a)  # paired: every resample differs by exactly 0.1
    assert shifted["difference_low"] == pytest.approx(0.1) and shifted["difference_high"] == pytest.approx(0.1)
    noisy = paired_bootstrap(torch.rand(500, generator=torch.Generator().manual_seed(0)), torch.full((500,), 0.5))
    assert noisy["difference_low"] < noisy["mean_difference"] < noisy["difference_high"]
    assert noisy["events"] == 500 and noisy["resamples"] == 1000
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_bootstrap(a, a[:2])


def test_nan_score_on_another_item_counts_ahead_of_the_target():
    scores = torch.tensor([[0.1, float("nan"), 0.5, 0.3]])
    # the target (2) has the best finite score, but a NaN elsewhere must not let it rank first
    assert target_ranks(scores, torch.tensor([2])).tolist() == [1]
