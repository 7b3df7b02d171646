"""The advantage and KL maths against hand-computed values."""

import math

import pytest
import torch
from toolgym_rl import common


def test_group_normalisation_by_hand():
    # group 1: r = 1, 0, 0, 1 -> mean 0.5, unbiased std sqrt(1/3); group 2: all equal -> 0
    adv = common.group_advantages([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5], group_size=4, eps=1e-6)
    s = math.sqrt(1 / 3)
    want = [0.5 / (s + 1e-6), -0.5 / (s + 1e-6), -0.5 / (s + 1e-6), 0.5 / (s + 1e-6)]
    assert adv[:4].tolist() == pytest.approx(want, rel=1e-6)
    assert adv[4:].tolist() == [0.0] * 4  # a group with one reward carries no signal


def test_group_normalisation_groups_are_independent():
    adv = common.group_advantages([0.0, 2.0, 10.0, 14.0], group_size=2, eps=1e-6)
    # each pair: (r - mean) / std with std = |a - b| / sqrt(2)
    assert adv.tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)] * 2, rel=1e-5)


def test_whitening_by_hand():
    x = [1.0, 2.0, 3.0, 6.0]  # mean 3, unbiased var (4 + 1 + 0 + 9) / 3 = 14/3
    w = common.whiten(x, eps=0.0)
    sd = math.sqrt(14 / 3)
    assert w.tolist() == pytest.approx([-2 / sd, -1 / sd, 0.0, 3 / sd], rel=1e-6)
    assert w.mean().item() == pytest.approx(0.0, abs=1e-6)


def test_k3_kl_by_hand():
    logp = torch.tensor([math.log(0.5), math.log(0.2), math.log(0.3)])
    ref = torch.tensor([math.log(0.25), math.log(0.2), math.log(0.6)])
    k3 = common.kl_k3(logp, ref)
    # k3 = exp(ref - logp) - (ref - logp) - 1, with ref/pi = 0.5, 1, 2
    want = [0.5 - math.log(0.5) - 1, 0.0, 2 - math.log(2) - 1]
    assert k3.tolist() == pytest.approx(want, rel=1e-6, abs=1e-7)
    assert (k3 >= 0).all()


def test_k3_is_an_unbiased_kl_estimate():
    # sampling from pi, E[k3] = KL(pi || ref)
    pi = torch.tensor([0.7, 0.2, 0.1])
    ref = torch.tensor([0.4, 0.4, 0.2])
    exact = (pi * (pi / ref).log()).sum().item()
    expected_k3 = (pi * common.kl_k3(pi.log(), ref.log())).sum().item()
    assert expected_k3 == pytest.approx(exact, rel=1e-5)


def test_aggregations():
    loss = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert common.aggregate(loss, mask, "token-mean").item() == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    assert common.aggregate(loss, mask, "seq-mean-token-sum").item() == pytest.approx(3.0)  # (3 + 3) / 2
