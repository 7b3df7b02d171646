"""FTRL's verifiable reward, as pure functions over counts and texts.

The per-turn rule and the answer matching reproduce FTRL's ``compute_solve_f1`` exactly (checked against
vectors produced by FTRL's own code in ``tests/data/ftrl_reward_vectors.jsonl``); the variants are the
paper's ablation. Episode metrics follow the paper's Solve-P / Solve-R / Solve-F1 definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from toolgym.calls import MALFORMED_MARKERS
from toolgym.scenario import EXTRA_KINDS

# Reward for a turn with p parsed calls of which q solved a sub-answer.
TURN_VARIANTS: dict[str, Callable[[int, int], float]] = {
    "ftrl": lambda p, q: 2 * q / (p + 1),
    "ftrl_precision": lambda p, q: q / p,
    "ftrl_count": lambda p, q: float(q),
    "ftrl_squared": lambda p, q: q * q / p,
}
EMPTY_REWARD = -0.5
MALFORMED_REWARD = -0.3
ALL_FOUND_NO_ANSWER_REWARD = 0.5


def normalize(text: str) -> str:
    """FTRL's normalisation: lower-case, commas removed, stripped."""
    return text.lower().replace(",", "").strip()


def answer_parts(expected: str) -> tuple[str, ...]:
    """The normalised parts of an expected answer: ``"A, B"`` -> ``("a", "b")``, each of which must be present."""
    parts = tuple(p for p in (q.lower().strip() for q in expected.split(",")) if p)
    return parts or (normalize(expected),)


def answer_in_output(output: str, expected: str) -> bool:
    """Whether a tool output holds an expected sub-answer; ``"A, B"`` needs every part present."""
    out = normalize(output)
    return all(p in out for p in answer_parts(expected))


def call_turn_reward(n_calls: int, n_solved: int, variant: str = "ftrl") -> float:
    """Reward of a turn that made ``n_calls`` > 0 parsed calls, ``n_solved`` of which solved something."""
    return TURN_VARIANTS[variant](n_calls, n_solved)


def answer_turn_reward(content: str, answer: str | None, n_unsolved: int, *, malformed: bool = False) -> float:
    """Reward of a turn without calls (FTRL's order of checks: empty, malformed, answer, all found)."""
    if not content and not malformed:
        return EMPTY_REWARD
    if malformed or any(m in content for m in MALFORMED_MARKERS):
        return MALFORMED_REWARD
    if answer is not None and normalize(answer) in normalize(content):
        return 1 / (1 + n_unsolved)
    if n_unsolved == 0:
        return ALL_FOUND_NO_ANSWER_REWARD
    return 0.0


def answer_correct(content: str, answer: str | None) -> bool:
    return answer is not None and normalize(answer) in normalize(content)


def solve_precision(n_obtained: int, n_calls: int) -> float:
    """Solve-P = s / c, and 1 when no call was made."""
    return n_obtained / n_calls if n_calls else 1.0


def solve_recall(n_obtained: int, n_expected: int) -> float:
    """Solve-R = s / N (1 when nothing was expected)."""
    return n_obtained / n_expected if n_expected else 1.0


def solve_f1(n_obtained: int, n_calls: int, n_expected: int) -> float:
    """Solve-F1 = 2s / (c + N) (1 when nothing was expected or called)."""
    return 2 * n_obtained / (n_calls + n_expected) if n_calls + n_expected else 1.0


def solve_scores(n_obtained: int, n_calls: int, n_expected: int) -> tuple[float, float, float]:
    """(Solve-P, Solve-R, Solve-F1) in one call, for the env's per-step components."""
    return (
        n_obtained / n_calls if n_calls else 1.0,
        n_obtained / n_expected if n_expected else 1.0,
        2 * n_obtained / (n_calls + n_expected) if n_calls + n_expected else 1.0,
    )


def strict_solve_scores(n_obtained: int, n_calls: int, n_expected: int) -> tuple[float, float, float]:
    """Solve-P/R/F1 of the kinds beyond FTRL's: with nothing expected, all three are 1 without a call, else 0.

    FTRL's definitions leave Solve-R at 1 whenever nothing is expected, so a policy that calls tools where none
    answers would keep full recall; for a kind whose point is not calling, every call is a miss. With sub-answers
    expected (``missing_info``) these are FTRL's scores.
    """
    if n_expected:
        return solve_scores(n_obtained, n_calls, n_expected)
    score = 0.0 if n_calls else 1.0
    return score, score, score


SolveScores = Callable[[int, int, int], tuple[float, float, float]]


def solve_scores_for(kind: str) -> SolveScores:
    """The Solve-P/R/F1 rule of a scenario kind: FTRL's, or :func:`strict_solve_scores` for the extra kinds
    (suites' own kinds, e.g. BFCL's irrelevance category, keep FTRL's rule and their published numbers)."""
    return strict_solve_scores if kind in EXTRA_KINDS else solve_scores


@dataclass(slots=True)
class Expected:
    """One expected sub-answer still to be found, registered under a tool name (an ``unsolved_set`` entry)."""

    tool: str
    answer: str
    subtask_id: str
    state_checks: tuple = ()
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.parts:
            self.parts = answer_parts(self.answer)


class SolveTracker:
    """FTRL's ``unsolved_set`` bookkeeping: each expected answer is consumed once, a call solves at most one.

    A write sub-task (one with state checks) is solved only when its answer is in the output *and* the world
    state shows the change it must cause.
    """

    __slots__ = ("_by_tool", "n_expected", "n_unsolved")

    def __init__(self, expected: Iterable[Expected]):
        self._by_tool: dict[str, list[Expected]] = {}
        n = 0
        for e in expected:
            self._by_tool.setdefault(e.tool, []).append(e)
            n += 1
        self.n_expected = n
        self.n_unsolved = n

    def unsolved_set(self) -> dict[str, list[str]]:
        return {t: [e.answer for e in es] for t, es in self._by_tool.items() if es}

    def unsolved_ids(self) -> set[str]:
        return {e.subtask_id for es in self._by_tool.values() for e in es}

    def match(self, tool: str, output: str, state: dict | None = None) -> Expected | None:
        """Consume and return the first still-unsolved expected answer of ``tool`` found in ``output``."""
        entries = self._by_tool.get(tool)
        if not entries:
            return None
        out = output.lower().replace(",", "").strip()  # normalize(output), inline: this runs on every call
        for i, e in enumerate(entries):
            for p in e.parts:  # a plain loop: this runs on every call, and all(<genexpr>) costs twice as much
                if p not in out:
                    break
            else:
                if not e.state_checks or (state is not None and all(c.holds(state) for c in e.state_checks)):
                    del entries[i]
                    self.n_unsolved -= 1
                    return e
        return None
