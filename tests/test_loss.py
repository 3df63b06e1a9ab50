"""InBatchSoftmax against values worked out by hand: plain, with accidental hits, with logQ."""

import math

import pytest
import torch

from tandemrec.training.loss import InBatchSoftmax

LOSS = InBatchSoftmax()


def row_loss(logits: list[float], positive: int, keep: list[int] | None = None) -> float:
    """-log softmax(logits)[positive] over the columns in `keep` (default: all), written out."""
    keep = list(range(len(logits))) if keep is None else keep
    return -logits[positive] + math.log(sum(math.exp(logits[j]) for j in keep))


def test_matches_hand_computed_value():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits = users @ items.T / 0.5 = [[2.0, 1.2], [0.0, 1.6]]
    expected = (row_loss([2.0, 1.2], 0) + row_loss([0.0, 1.6], 1)) / 2
    loss = LOSS(users, items, torch.tensor([10, 11]), 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_temperature_as_tensor_equals_float():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    ids = torch.tensor([10, 11])
    assert LOSS(users, items, ids, torch.tensor(0.5)).item() == pytest.approx(LOSS(users, items, ids, 0.5).item())


def test_three_users_hand_value():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    items = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    # temperature 1: logits[i][j] = users[i] . items[j]
    logits = [[0.8, 0.0, 1.0], [0.6, 1.0, 0.0], [0.96, 0.8, 0.6]]
    expected = sum(row_loss(logits[i], i) for i in range(3)) / 3
    loss = LOSS(users, items, torch.tensor([1, 2, 3]), 1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_accidental_hit_is_not_a_negative():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    items = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    logits = [[0.8, 0.0, 1.0], [0.6, 1.0, 0.0], [0.96, 0.8, 0.6]]
    # Rows 0 and 2 both bought item 5: for row 0 column 2 is its own item again (masked), and for
    # row 2 column 0 is. Row 1 (item 7) keeps both copies of item 5 as negatives.
    expected = (
        row_loss(logits[0], 0, keep=[0, 1])
        + row_loss(logits[1], 1)
        + row_loss(logits[2], 2, keep=[1, 2])
    ) / 3
    loss = LOSS(users, items, torch.tensor([5, 7, 5]), 1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    unmasked = sum(row_loss(logits[i], i) for i in range(3)) / 3
    assert loss.item() != pytest.approx(unmasked, rel=1e-3)


def test_all_items_identical_gives_zero_loss():
    # Every column is the row's own item: nothing is a negative, the loss is -log(1) = 0.
    users = torch.randn(4, 3)
    items = torch.randn(4, 3)
    loss = LOSS(users, items, torch.tensor([9, 9, 9, 9]), 0.1)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_logq_subtracts_log_probability_per_candidate():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    log_q = torch.log(torch.tensor([0.75, 0.25]))
    # logits - log_q[column]: a popular column (q=0.75) is pushed down less than it would be
    # as a frequent negative, i.e. its logit goes up by -log(0.75), the rare one by -log(0.25).
    shifted = [
        [2.0 - math.log(0.75), 1.2 - math.log(0.25)],
        [0.0 - math.log(0.75), 1.6 - math.log(0.25)],
    ]
    expected = (row_loss(shifted[0], 0) + row_loss(shifted[1], 1)) / 2
    loss = LOSS(users, items, torch.tensor([1, 2]), 0.5, log_q)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert loss.item() != pytest.approx(LOSS(users, items, torch.tensor([1, 2]), 0.5).item(), rel=1e-3)


def test_uniform_logq_changes_nothing():
    torch.manual_seed(0)
    users, items = torch.randn(5, 4), torch.randn(5, 4)
    ids = torch.arange(5)
    uniform = torch.full((5,), math.log(1 / 5))
    assert LOSS(users, items, ids, 0.2, uniform).item() == pytest.approx(LOSS(users, items, ids, 0.2).item(), rel=1e-6)


def test_logq_with_accidental_hits():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    items = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    q = [0.5, 0.2, 0.5]
    logits = [[0.8, 0.0, 1.0], [0.6, 1.0, 0.0], [0.96, 0.8, 0.6]]
    shifted = [[v - math.log(q[j]) for j, v in enumerate(row)] for row in logits]
    expected = (
        row_loss(shifted[0], 0, keep=[0, 1]) + row_loss(shifted[1], 1) + row_loss(shifted[2], 2, keep=[1, 2])
    ) / 3
    loss = LOSS(users, items, torch.tensor([5, 7, 5]), 1.0, torch.log(torch.tensor(q)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_gradient_reaches_both_towers_and_temperature():
    torch.manual_seed(0)
    users = torch.randn(4, 3, requires_grad=True)
    items = torch.randn(4, 3, requires_grad=True)
    log_temperature = torch.tensor(math.log(0.1), requires_grad=True)
    loss = LOSS(users, items, torch.tensor([1, 2, 1, 3]), log_temperature.exp())
    loss.backward()
    for grad in (users.grad, items.grad, log_temperature.grad):
        assert grad is not None and torch.isfinite(grad).all()
    assert users.grad.abs().sum() > 0
    assert items.grad.abs().sum() > 0
    assert log_temperature.grad.abs() > 0


def test_batch_of_one_item_twice_has_zero_loss_and_gradient():
    # Both rows bought the same item: each row's only other column is its own item again (masked),
    # so neither row has a negative, the loss is -log(1) = 0 and nothing is pushed around.
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    items = torch.tensor([[0.8, 0.6], [0.0, 1.0]], requires_grad=True)
    loss = LOSS(users, items, torch.tensor([4, 4]), 1.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.count_nonzero(items.grad) == 0
    assert torch.count_nonzero(users.grad) == 0


def test_rows_of_one_rank_against_the_global_batch_and_extra_negatives():
    # A rank holding global rows 2..3 of a batch of 4, plus one extra negative (item 9) after the batch.
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    ids = torch.tensor([1, 2, 3, 2, 9])
    logits = [[0.8, 0.0, 1.0, 0.6, -1.0], [0.6, 1.0, 0.0, 0.8, 0.0]]
    # Row 0's positive is column 2 (item 3); row 1's is column 3 (item 2), whose other copy, column 1,
    # is masked as an accidental hit.
    expected = (row_loss(logits[0], 2) + row_loss(logits[1], 3, keep=[0, 2, 3, 4])) / 2
    loss = LOSS(users, items, ids, 1.0, offset=2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_weighted_rows_give_each_rank_its_share_of_the_global_mean():
    torch.manual_seed(0)
    users, items = torch.nn.functional.normalize(torch.randn(6, 4), dim=1), torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    ids = torch.arange(6)
    whole = LOSS(users, items, ids, 0.2)
    share = torch.full((3,), 1 / 6)
    parts = [LOSS(users[s : s + 3], items, ids, 0.2, weights=share, offset=s) for s in (0, 3)]
    assert sum(p.item() for p in parts) == pytest.approx(whole.item(), rel=1e-6)
