"""Tool time limits hold on worker threads: runaways return timeout feedback while other threads keep stepping.

Trainers and servers step envs from worker threads, where SIGALRM never arrives. These tests step real
ToolEnvs concurrently from several threads: each runaway (regex backtracking, pure-Python library code that
never ticks, a ticking loop, a huge C call) must come back as tool feedback within a small multiple of the
limit, and envs stepped by other threads must keep making progress during the runaway (a runaway that held
the GIL would freeze them).
"""

from __future__ import annotations

import re
import threading
import time
import warnings

import pytest

# The sandbox's re runs on the regex package (a dependency); without it, re would stop only on the main thread
import regex  # noqa: F401  (fails here, not by hanging below, when it is missing)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolgym import Scenario, StaticSource, SubTask, ToolEnv
from toolgym.sandbox import _WATCHDOG, Toolbox, ToolOutcome, ToolSourceError, serialize_output
from toolgym.scenario import tool_schema

LIMIT = 0.5  # tool_time_limit of these envs
BOUND = 4 * LIMIT + 1.0  # "a small multiple of the limit", with room for a loaded 2-core CI machine

SOURCE = r"""
import re
import fractions

def email_ok(address: str):
    return re.match(r'^([a-zA-Z0-9]+)*@example\.com$', address) is not None

def backtrack(text: str):
    return [m.span() for m in re.finditer(r'(a|aa)+$', text)]

def compiled(text: str):
    p = re.compile(r'(\d|\d\d)+$')
    return p.search(text) is not None

def exact_sum(n: int):
    # one line of tool code, then millions of pure-Python Fraction additions inside the library: no ticks
    return str(sum(map(fractions.Fraction, range(n))))

def spin(n: int):
    while True:
        n = n + 1

def big_power(e: int):
    return pow(10, e)

def big_repeat(n: int):
    return len('ab' * n)

def big_sort(n: int):
    return sorted(range(n))[:3]

def aliased_compare(depth: int):
    a = [0]
    b = [0]
    for i in range(depth):
        a = [a, a]
        b = [b, b]
    return a == b

def status(flight: str):
    return {'flight': flight, 'status': state['flights'].get(flight, 'unknown')}
"""
_S, _I = {"type": "string"}, {"type": "integer"}
PARAMS = {
    "email_ok": {"address": _S},
    "backtrack": {"text": _S},
    "compiled": {"text": _S},
    "exact_sum": {"n": _I},
    "spin": {"n": _I},
    "big_power": {"e": _I},
    "big_repeat": {"n": _I},
    "big_sort": {"n": _I},
    "aliased_compare": {"depth": _I},
    "status": {"flight": _S},
}
RUNAWAYS = {  # tool -> (arguments, expected error kind or output)
    # the 548 s case with re on a worker thread; the regex engine's own optimisations answer it at once
    "email_ok": ({"address": "a" * 34 + "!"}, "False"),
    "backtrack": ({"text": "a" * 60 + "b"}, "timeout"),  # catastrophic for the regex engine too
    "compiled": ({"text": "1" * 60 + "x"}, "timeout"),
    "exact_sum": ({"n": 10**7}, "timeout"),  # ~20 s of pure-Python library code without a tick
    "spin": ({"n": 0}, "timeout"),
    "big_power": ({"e": 10**8}, "resource"),  # C calls: refused before they start by the size guards
    "big_repeat": ({"n": 10**9}, "resource"),
    "big_sort": ({"n": 10**11}, "resource"),
}


def make_env(**kwargs) -> ToolEnv:
    """A one-scenario env offering every tool above; ``kwargs`` go to ToolEnv (e.g. ``isolation``)."""
    scenario = Scenario(
        id="threads",
        kind="single_hop",
        messages=[{"role": "user", "content": "Status of FL1?"}],
        tools=[tool_schema(n, n, p, list(p)) for n, p in PARAMS.items()],
        source=dict.fromkeys(PARAMS, SOURCE),
        state={"flights": {"FL1": "on_time"}},
        subtasks=[SubTask("s1", "status", {"flight": "FL1"}, ["on_time"])],
        answer="on_time",
    )
    kwargs.setdefault("tool_time_limit", LIMIT)
    kwargs.setdefault("tool_step_budget", 10**9)  # let the clock, not the step budget, stop the loops
    return ToolEnv(StaticSource("threads", [scenario]), max_turns=10**6, **kwargs)


def call(name: str, arguments: dict) -> dict:
    """One assistant turn making one tool call (an OpenAI message dict)."""
    fn = {"name": name, "arguments": arguments}
    return {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function", "function": fn}]}


class Stepper(threading.Thread):
    """Steps a normal env (one cheap lookup per step) until stopped, timestamping every step."""

    def __init__(self, **env_kwargs) -> None:
        super().__init__(daemon=True)
        self.env = make_env(**env_kwargs)
        self.times: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        env, action = self.env, call("status", {"flight": "FL1"})
        env.reset(seed=0)
        while not self.stop.is_set():
            _, _, _, _, info = env.step(action)
            if info["feedback"] != ['{"flight": "FL1", "status": "on_time"}']:
                self.errors.append(repr(info["feedback"]))
            self.times.append(time.perf_counter())

    def steps_between(self, t0: float, t1: float) -> int:
        return sum(t0 <= t < t1 for t in list(self.times))


def run_runaway(env: ToolEnv, name: str, arguments: dict, out: dict) -> None:
    env.reset(seed=0)
    t0 = time.perf_counter()
    _, _, _, _, info = env.step(call(name, arguments))
    out[name] = (info["feedback"][0], t0, time.perf_counter())


def run_concurrently(runaways: dict, **env_kwargs) -> tuple[dict, list[Stepper]]:
    """Each runaway on its own worker thread and env, while two more threads step normal envs."""
    steppers = [Stepper(**env_kwargs) for _ in range(2)]
    for s in steppers:
        s.start()
    while not all(s.times for s in steppers):
        time.sleep(0.01)
    out: dict = {}
    envs = {name: make_env(**env_kwargs) for name in runaways}
    threads = [
        threading.Thread(target=run_runaway, args=(envs[n], n, args, out), daemon=True)
        for n, (args, _) in runaways.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    time.sleep(0.2)  # the steppers must still be going after the runaways
    for s in steppers:
        s.stop.set()
        s.join(10)
    for env in (*envs.values(), *(s.env for s in steppers)):
        env.close()
    return out, steppers


def test_runaways_on_worker_threads_time_out_while_other_threads_keep_stepping() -> None:
    out, steppers = run_concurrently(RUNAWAYS)
    assert set(out) == set(RUNAWAYS), "a runaway thread did not return"
    for name, (_, kind) in RUNAWAYS.items():
        feedback, t0, t1 = out[name]
        if kind == "timeout":
            assert feedback == f"Error: tool '{name}' timed out (time limit of {LIMIT:g} s exceeded)", feedback
        elif kind == "resource":
            assert feedback.startswith(f"Error: tool '{name}' exceeded the memory/size limit"), feedback
        else:
            assert feedback == kind
        assert t1 - t0 < BOUND, (name, t1 - t0)
    start = min(t0 for _, t0, _ in out.values())
    end = max(t1 for _, _, t1 in out.values())
    assert end - start > LIMIT  # the timeouts really ran for about the limit
    for s in steppers:
        assert not s.errors, s.errors[:3]
        # progress all through the runaways: in each half of the window, and after it
        mid = (start + end) / 2
        assert s.steps_between(start, mid) > 0 and s.steps_between(mid, end) > 0
        assert s.steps_between(end, time.perf_counter()) > 0


def test_c_call_that_no_guard_sees_is_killed_in_process_mode_from_worker_threads() -> None:
    """``==`` of two exponentially aliased lists holds the GIL inside one C call: only the forked worker
    (isolation="process") can stop it; from worker threads it times out while other threads keep stepping."""
    runaways = {"aliased_compare": ({"depth": 40}, "timeout"), "spin": ({"n": 0}, "timeout")}
    out, steppers = run_concurrently(runaways, isolation="process")
    for name in runaways:
        feedback, t0, t1 = out[name]
        assert feedback == f"Error: tool '{name}' timed out (time limit of {LIMIT:g} s exceeded)", feedback
        assert t1 - t0 < BOUND, (name, t1 - t0)
    start = min(t0 for _, t0, _ in out.values())
    end = max(t1 for _, _, t1 in out.values())
    for s in steppers:
        assert not s.errors, s.errors[:3]
        assert s.steps_between(start, end) > 0 and s.steps_between(end, time.perf_counter()) > 0


def test_env_keeps_working_after_a_timeout_on_a_worker_thread() -> None:
    """The abort lands inside the call only: the same env then answers normal calls, and the next runaway."""
    env = make_env()
    result: list = []

    def episode() -> None:
        env.reset(seed=0)
        for name, args in (
            ("exact_sum", {"n": 10**7}),
            ("status", {"flight": "FL1"}),
            ("spin", {"n": 0}),
            ("status", {"flight": "FL9"}),
        ):
            result.append(env.step(call(name, args))[4]["feedback"][0])
        time.sleep(2 * LIMIT)  # a late abort (there must be none) would land here and kill the thread
        result.append("alive")

    fired = _WATCHDOG.fired
    t = threading.Thread(target=episode)
    t.start()
    t.join(60)
    assert _WATCHDOG.fired > fired  # exact_sum never ticks: the watchdog, not the tick clock, stopped it
    assert result == [
        f"Error: tool 'exact_sum' timed out (time limit of {LIMIT:g} s exceeded)",
        '{"flight": "FL1", "status": "on_time"}',
        f"Error: tool 'spin' timed out (time limit of {LIMIT:g} s exceeded)",
        '{"flight": "FL9", "status": "unknown"}',
        "alive",
    ]


# ------------------------------------------------------------------------------ re semantics on the regex engine

REGEX_TOOL = r"""
import re

def rx(op: str, pattern: str, text: str, flags: int):
    try:
        if op == 'search':
            m = re.search(pattern, text, flags)
            return None if m is None else [m.group(0), list(m.groups()), list(m.span()), m.lastindex]
        if op == 'fullmatch':
            m = re.compile(pattern, flags).fullmatch(text)
            return None if m is None else [m.group(0), list(m.span(1)) if m.re.groups else None]
        if op == 'findall':
            return re.findall(pattern, text, flags)
        if op == 'finditer':
            return [list(m.span()) for m in re.compile(pattern, flags).finditer(text)]
        if op == 'sub':
            return list(re.subn(pattern, '<\\g<0>>', text, 0, flags))
        return re.split(pattern, text, 0, flags)
    except re.error as e:
        return 'error: ' + str(e)
"""


def plain_rx(op: str, pattern: str, text: str, flags: int):
    """The tool's body on CPython's own re: the reference."""
    try:
        if op == "search":
            m = re.search(pattern, text, flags)
            return None if m is None else [m.group(0), list(m.groups()), list(m.span()), m.lastindex]
        if op == "fullmatch":
            m = re.compile(pattern, flags).fullmatch(text)
            return None if m is None else [m.group(0), list(m.span(1)) if m.re.groups else None]
        if op == "findall":
            return re.findall(pattern, text, flags)
        if op == "finditer":
            return [list(m.span()) for m in re.compile(pattern, flags).finditer(text)]
        if op == "sub":
            return list(re.subn(pattern, "<\\g<0>>", text, count=0, flags=flags))
        return re.split(pattern, text, maxsplit=0, flags=flags)
    except re.error as e:
        return "error: " + str(e)


ALPHABET = "ab1 _-:{}[]\n"
_atoms = st.sampled_from(
    [
        "a",
        "b",
        "1",
        " ",
        "-",
        ":",
        "{",
        "}",
        "]",
        r"\d",
        r"\w",
        r"\s",
        r"\b",
        r"\B",
        r"\.",
        r"\{",
        r"\[",
        ".",
        "^",
        "$",
        "[ab]",
        "[^a]",
        "[]a]",
        "[^]b]",
        "[a-]",
        "[[:a]",
        "[[:alpha:]]",
        "[{e}]",
        r"[\d:]",
        r"\A",
        r"\Z",
        r"\1",
    ]
)
_quants = st.sampled_from(
    [
        "",
        "",
        "*",
        "+",
        "?",
        "*?",
        "+?",
        "??",
        "{2}",
        "{1,3}",
        "{,2}",
        "{2,}",
        "{}",
        "{,}",
        "{e<=1}",
        "{e}",
        "{1,x}",
        "*+",
        "++",
        "{1,2}?",
        "{2,1}",
    ]
)


def _wrap(inner: str, kind: int) -> str:
    return [f"({inner})", f"(?:{inner})", f"(?={inner})", f"(?!{inner})", f"(?>{inner})", inner][kind]


_patterns = st.recursive(
    st.tuples(_atoms, _quants).map("".join),
    lambda kids: st.one_of(
        st.tuples(kids, kids).map("".join),
        st.tuples(kids, kids).map("|".join),
        st.tuples(kids, st.integers(0, 5), _quants).map(lambda t: _wrap(t[0], t[1]) + t[2]),
    ),
    max_leaves=6,
)
_flags = st.sampled_from([0, re.I, re.M, re.S, re.X, re.A, re.I | re.M])
_ops = st.sampled_from(["search", "fullmatch", "findall", "finditer", "sub", "split"])


@pytest.fixture(scope="module")
def rx_worker():
    """A Toolbox running REGEX_TOOL, called on one persistent worker thread (where SIGALRM never arrives)."""
    from concurrent.futures import ThreadPoolExecutor

    box = Toolbox({"rx": REGEX_TOOL}, time_limit=LIMIT)
    with ThreadPoolExecutor(1) as pool:
        yield lambda **args: pool.submit(box.call, "rx", args).result(timeout=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=_ops, pattern=_patterns, text=st.text(ALPHABET, max_size=8), flags=_flags)
def test_sandboxed_re_equals_cpython_re(rx_worker, op: str, pattern: str, text: str, flags: int) -> None:
    """Tool code's re (on the regex engine) gives what CPython's re gives, errors included: on subjects this
    short no pattern backtracks for long, so both run to completion."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "possible nested set": emitted by both engines
        expected = serialize_output(plain_rx(op, pattern, text, flags))
        out = rx_worker(op=op, pattern=pattern, text=text, flags=flags)
    assert out == ToolOutcome(True, expected, None)


_evil = st.tuples(
    st.sampled_from(["a", "a?", "a*", "aa", "a|aa", "a|a", r"\w", "[ab]", "a+"]),
    st.sampled_from(["+", "*", "{1,40}"]),
    st.sampled_from(["+", "*", "", "{2,}"]),
    st.sampled_from(["$", "b", "c$", r"\d", ""]),
).map(lambda t: f"(?:({t[0]}){t[1]}){t[2]}{t[3]}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=_ops, pattern=_evil, n=st.integers(20, 80), tail=st.sampled_from(["", "!", "b", "1"]))
def test_any_regex_on_a_worker_thread_returns_within_the_limit(rx_worker, op, pattern, n, tail) -> None:
    """Nested quantifiers on long subjects (many backtrack exponentially): every call returns, as a result or
    as a timeout, within the bound, never holding the thread past it."""
    t0 = time.perf_counter()
    out = rx_worker(op=op, pattern=pattern, text="a" * n + tail, flags=0)
    assert time.perf_counter() - t0 < BOUND
    assert out.ok or out.output == f"Error: tool 'rx' timed out (time limit of {LIMIT:g} s exceeded)", out.output


RE_API = r"""
import re

def api():
    p = re.compile(r'(?P<code>[A-Z]{2})(\d+)', re.I | re.M)
    m = p.match('xAB12', 1)
    out = [m.group('code'), m.groups(), m.span(2), m.lastindex, m.groupdict(), m[0], isinstance(m, re.Match)]
    out.append(isinstance(p, re.Pattern))
    out.append(p.sub(lambda m: m.group(2) + m.group(1), 'ab1 cd22 ef333', count=2))
    out.append(p.subn(r'<\g<code>>', 'ab1 cd22'))
    out.append(re.split(r'[,;]\s*', 'a, b;c', maxsplit=1))
    out.append([m.start() for m in re.finditer(r'\d', 'a1b2c3')])
    out.append(p.findall('ab1 cd22', 3))
    out.append(re.search(r'^b', 'a\nb', flags=re.MULTILINE).start())
    out.append(re.escape('1.5*[x]'))
    out.append(p.fullmatch('ab12', 0, 3).span())
    for bad in (r'(', r'a{2,1}', r'\p{L}'):
        try:
            re.compile(bad)
        except re.error as e:
            out.append(str(e))
    try:
        re.sub('(a)', r'\2', 'a')
    except re.error as e:
        out.append(str(e))
    try:
        re.compile(p, re.I)
    except ValueError as e:
        out.append(str(e))
    return out
"""


def test_re_api_in_tool_code_matches_cpython_re() -> None:
    """The parts of re tools use (signatures, keywords, Match/Pattern types, errors) behave as CPython's re."""
    ns: dict = {}
    exec(RE_API, ns)
    expected = serialize_output(ns["api"]())
    box = Toolbox({"api": RE_API})
    assert box.call("api", {}) == ToolOutcome(True, expected, None)
    result: list = []
    t = threading.Thread(target=lambda: result.append(box.call("api", {})))
    t.start()
    t.join(30)
    assert result == [ToolOutcome(True, expected, None)]


RACE_TOOLS = """
import fractions

def slow(n: int):
    return str(sum(map(fractions.Fraction, range(n))))

def ok(x: int):
    return x + 1
"""


def _tight_box(sources: dict) -> Toolbox:
    """A Toolbox with a 10 ms limit. Its module code runs under that limit too, and wall-clock time counts: on a
    loaded machine a load can overrun it, which these tests are not about, so a timed-out load is retried."""
    for _ in range(50):
        try:
            return Toolbox(sources, time_limit=0.01)
        except ToolSourceError as e:
            if "time limit" not in str(e):
                raise
    raise AssertionError("the tools never loaded within 10 ms")


def test_watchdog_aborts_never_land_outside_a_call() -> None:
    """Four threads alternate calls that end just before, at or after a 10 ms deadline with quick calls: every
    abort is reported by the call it was meant for, none escapes into the caller's code, later calls are
    unaffected. (Limits are wall-clock, so a quick call starved of the GIL for 10 ms may itself time out.)"""
    failures: list = []
    timeouts: list[int] = []

    def worker(k: int) -> None:
        n = 0
        try:
            box = _tight_box({"slow": RACE_TOOLS, "ok": RACE_TOOLS})
            for i in range(120):
                out = box.call("slow", {"n": 2000 + (i * 37 + k * 11) % 4000})  # about 2-15 ms of Fraction sums
                n += out.error == "timeout"
                if not (out.ok or out.error == "timeout"):
                    failures.append(out)
                for j in range(3):
                    o = box.call("ok", {"x": j})
                    if o.output != str(j + 1) and o.error != "timeout":
                        failures.append(o)
        except BaseException as e:  # an abort that escaped the call it was meant for
            failures.append(repr(e))
        timeouts.append(n)

    fired = _WATCHDOG.fired
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:5]
    assert len(timeouts) == 4 and all(timeouts), timeouts  # every thread hit the deadline many times
    assert _WATCHDOG.fired - fired >= sum(timeouts) // 2  # most of them through the watchdog


@pytest.mark.parametrize("what", ["call", "failure"])
def test_an_abort_for_a_thread_starved_right_after_it_registers_lands_in_its_call(monkeypatch, what) -> None:
    """A worker thread can lose the GIL for longer than its limit between registering its deadline and running
    the tool (other threads hold the GIL 5 ms at a time); the watchdog then fires at once. Here registering
    sleeps past the deadline, so the abort arrives inside ``begin``: it must come back as the call's timeout,
    never as an exception in the caller (also for the guarded window that reads a failed tool's message)."""
    register = _WATCHDOG.register

    def starved(ident, deadline, expire):
        register(ident, deadline, expire)
        time.sleep(0.05)

    box = _tight_box({"ok": RACE_TOOLS, "bad": "def bad(x: int):\n    raise ValueError(x)\n"})
    out: list = []

    def worker() -> None:
        try:
            if what == "call":
                out.append(box.call("ok", {"x": 1}))
            else:  # the tool raises with the real register; reading its message is starved
                monkeypatch.undo()
                failure = box.call("bad", {"x": 1})
                monkeypatch.setattr(_WATCHDOG, "register", starved)
                out.append((failure, box._failure("bad", ValueError(1), None)))
        except BaseException as e:
            out.append(repr(e))

    monkeypatch.setattr(_WATCHDOG, "register", starved)
    t = threading.Thread(target=worker)
    t.start()
    t.join(30)
    monkeypatch.undo()
    if what == "call":
        assert out and isinstance(out[0], ToolOutcome) and out[0].error == "timeout", out
    else:
        assert out and isinstance(out[0], tuple), out
        assert out[0][0].error == "exception" and out[0][1].output.startswith("Error: ValueError"), out
    assert box.call("ok", {"x": 2}) == ToolOutcome(True, "3", None)  # later calls are unaffected
