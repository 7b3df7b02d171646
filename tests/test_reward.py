"""FTRL reward functions: formulas, matching rules, and ranges (property-tested)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolgym import reward as R
from toolgym.scenario import StateCheck


def test_turn_formulas():
    assert R.call_turn_reward(1, 1) == 1.0
    assert R.call_turn_reward(2, 2) == pytest.approx(4 / 3)
    assert R.call_turn_reward(3, 1) == 0.5
    assert R.call_turn_reward(4, 2, "ftrl_precision") == 0.5
    assert R.call_turn_reward(4, 2, "ftrl_count") == 2.0
    assert R.call_turn_reward(4, 2, "ftrl_squared") == 1.0


def test_answer_turn_order_of_checks():
    assert R.answer_turn_reward("", "x", 0) == -0.5
    assert R.answer_turn_reward("oops </tool_call>", "oops", 0) == -0.3
    assert R.answer_turn_reward("it is <tool_parsed_response>", None, 0) == -0.3
    assert R.answer_turn_reward("The answer: Sol.", "sol", 2) == pytest.approx(1 / 3)
    assert R.answer_turn_reward("27 Norwegian krone", "27, Norwegian krone", 0) == 1.0
    assert R.answer_turn_reward("no idea", "sol", 0) == 0.5
    assert R.answer_turn_reward("no idea", "sol", 1) == 0.0
    assert R.answer_turn_reward("x", "x", 0, malformed=True) == -0.3


def test_answer_in_output_normalises_and_needs_every_part():
    assert R.answer_in_output('{"temperature": 31}', "31")
    assert R.answer_in_output("Norwegian Krone", "norwegian krone")
    assert R.answer_in_output("1,234 USD", "1234")
    assert R.answer_in_output("-3 and 19", "-3, 19")
    assert not R.answer_in_output("-3 only", "-3, 19")


def test_tracker_consumes_each_answer_once_and_one_per_call():
    tr = R.SolveTracker([R.Expected("w", "19", "s1"), R.Expected("w", "-3", "s2")])
    assert tr.match("w", "both -3 and 19").subtask_id == "s1"
    assert tr.match("w", "both -3 and 19").subtask_id == "s2"
    assert tr.match("w", "both -3 and 19") is None
    assert tr.n_unsolved == 0


def test_write_subtask_needs_the_state_change():
    check = StateCheck(["bookings", "B1", "status"], "cancelled")
    tr = R.SolveTracker([R.Expected("cancel", "B1", "s1", (check,))])
    assert tr.match("cancel", "B1 cancelled", {"bookings": {"B1": {"status": "confirmed"}}}) is None
    assert tr.match("cancel", "B1 cancelled", {"bookings": {"B1": {"status": "cancelled"}}}) is not None


@given(st.integers(1, 50), st.data())
def test_turn_reward_ranges(p, data):
    q = data.draw(st.integers(0, p))
    r = R.call_turn_reward(p, q)
    assert 0 <= r < 2
    assert 0 <= R.call_turn_reward(p, q, "ftrl_precision") <= 1


@given(st.text(), st.one_of(st.none(), st.text()), st.integers(0, 20))
def test_answer_reward_range(content, answer, t):
    assert -0.5 <= R.answer_turn_reward(content, answer, t) <= 1.0


@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30))
def test_episode_metrics_in_unit_interval(s, c, n):
    s = min(s, c, n)
    for v in (R.solve_precision(s, c), R.solve_recall(s, n), R.solve_f1(s, c, n)):
        assert 0 <= v <= 1


@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30))
def test_solve_scores_equal_the_three_definitions(s, c, n):
    s = min(s, c, n)
    assert R.solve_scores(s, c, n) == (R.solve_precision(s, c), R.solve_recall(s, n), R.solve_f1(s, c, n))


def test_episode_metric_definitions():
    assert R.solve_precision(2, 4) == 0.5 and R.solve_precision(0, 0) == 1.0
    assert R.solve_recall(2, 4) == 0.5
    assert R.solve_f1(2, 3, 2) == pytest.approx(0.8)
