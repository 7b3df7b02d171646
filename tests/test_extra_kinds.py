"""The kinds beyond FTRL's, ``irrelevance`` and ``missing_info``, in every spec-based domain ``find_domains()`` finds.

Over a range of seeds per domain: gold plays score the maximum, the baselines score what the definitions say
(a call where no tool answers scores 0, a plain reply 1; never asking leaves recall at 0), no offered tool answers
an irrelevance query, nothing but the user reveals a missing_info query's id. The default mix is unchanged: no
extra kind, no ``ask_user``, the same scenarios.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from functools import cache

import gymnasium as gym
import numpy as np
import pytest

import toolgym
from toolgym import Curriculum
from toolgym.calls import format_hermes
from toolgym.construct.document import ASK_USER
from toolgym.construct.pipeline import BuildConfig, Stages, build, find_domains, generate, rebuild
from toolgym.evaluate import summarize
from toolgym.packs import resolve_ref
from toolgym.registry import make_source
from toolgym.reward import answer_in_output, normalize, solve_scores, solve_scores_for, strict_solve_scores
from toolgym.sandbox import Toolbox
from toolgym.scenario import ALL_KINDS, EXTRA_KINDS, KINDS, Scenario
from toolgym.sources import ProceduralSource

MODULES = tuple(find_domains())
SEEDS = range(25)
HOTEL = "ToolGym/HotelBooking-v1"
KNOBS = ({}, {"generalize": 2, "type_generalize": 2, "expand": 2, "distractors": 6}, {"integrate": False})


@cache
def _built(module: str, kind: str, knobs_i: int) -> tuple[Stages, ...]:
    """Verified builds (all stages) of ``kind`` from the first seeds that yield one, one per seed of SEEDS."""
    domain = resolve_ref(find_domains()[module])
    config = BuildConfig(kind=kind, **KNOBS[knobs_i])
    out, seed = [], 0
    while len(out) < len(SEEDS):
        got = build(seed, config, domain, keep_stages=True)
        seed += 1
        if got is not None:
            out.append(got)
        assert seed < 20 * len(SEEDS), f"{module}: too few verified {kind} scenarios"
    return tuple(out)


def _env(scenario: Scenario):
    env = toolgym.ToolEnv(ProceduralSource("x", lambda rng, cfg: scenario, None))
    env.reset(seed=0, options={"scenario": scenario})
    return env


def _play(env, actions) -> tuple[list[float], dict]:
    rewards, info = [], {}
    for action in actions:
        _, r, term, trunc, info = env.step(action)
        rewards.append(r)
        if term or trunc:
            break
    return rewards, info


def _play_gold(env) -> tuple[list[float], dict]:
    rewards, info = [], {}
    done = False
    while not done:
        _, r, term, trunc, info = env.step(env.unwrapped.gold_actions()[0])
        rewards.append(r)
        done = term or trunc
    return rewards, info


def _probes(fn, rid: str, entity: str) -> list[dict]:
    """Calls of ``fn`` aimed at record ``rid``: every action of a manage tool, every allowed value of an update."""
    base: dict = {}
    for p in fn.params:
        if p.role == "id":
            base[p.name] = rid
        elif p.role == "ids":
            base[p.name] = [rid]
        elif p.role == "type":
            base[p.name] = entity
        elif p.role == "extra" and p.required:
            base[p.name] = p.gold
        elif p.role == "question":
            base[p.name] = "Which record do you mean?"
    calls = [base]
    if fn.op == "manage":
        calls = [{**base, "action": a} for a in fn.spec["actions"]]
    values = fn.param("value") or fn.param("changes")
    if values is not None:
        options = values.schema.get("enum") or ["x"]
        calls = [{**c, values.name: v} for c in calls for v in options]
    return calls


@pytest.fixture(params=MODULES)
def module(request) -> str:
    return request.param


@pytest.mark.parametrize("knobs_i", range(len(KNOBS)))
@pytest.mark.parametrize("kind", EXTRA_KINDS)
def test_gold_scores_the_maximum(module, kind, knobs_i):
    for st in _built(module, kind, knobs_i):
        env = _env(st.scenario)
        rewards, info = _play_gold(env)
        calls = [len(turn) for turn in st.scenario.gold_plan()]
        assert rewards == pytest.approx([2 * p / (p + 1) for p in calls] + [1.0])
        episode = info["episode"]
        assert (episode["solve_p"], episode["solve_r"], episode["solve_f1"], episode["state_ok"]) == (1, 1, 1, 1)


def test_irrelevance_offers_no_tool_that_answers(module):
    """Every offered tool, on every record of the world (each action and value), never returns the hidden answer."""
    domain = resolve_ref(find_domains()[module])
    for knobs_i in range(len(KNOBS)):
        for st in _built(module, "irrelevance", knobs_i):
            sc, dec = st.scenario, st.decomposition
            assert sc.kind == "irrelevance" and sc.subtasks == [] and sc.answer == ""
            (hidden,) = dec.subquestions
            needed = {st.integrated.mapping.get(f.name, f.name) for f in st.documents.functions}
            assert not needed & set(sc.tool_names) - {ASK_USER}
            assert len(sc.tools) == KNOBS[knobs_i].get("distractors", 3) + 2  # as many as single_hop, + ask_user
            assert any(f.op not in ("fake", "ask") for f in st.scaled.functions)  # a real tool of the domain
            for fn in st.scaled.functions:
                box = Toolbox({fn.name: sc.source[fn.name]})
                entities = [fn.spec["entity"]] if "entity" in fn.spec else [e.name for e in domain.entities]
                for ent in entities:
                    for rid in sc.state[domain.entity(ent).table]:
                        for args in _probes(fn, rid, ent):
                            out = box.call(fn.name, args, sc.fresh_state()).output
                            assert normalize(hidden.answer) not in normalize(out), (fn.name, args, hidden)


def test_irrelevance_baselines_score_what_the_definitions_say(module):
    for st in _built(module, "irrelevance", 0):
        sc = st.scenario
        # never call: a plain reply scores 1, and so do Solve-P/R/F1
        rewards, info = _play(_env(sc), ["None of the tools I have can answer that, sorry."])
        assert rewards == [1.0] and info["reward_components"]["answer_correct"] == 1.0
        assert [info["episode"][k] for k in ("solve_p", "solve_r", "solve_f1")] == [1.0, 1.0, 1.0]
        # FTRL's other branches of a turn without calls stay as they are
        assert _play(_env(sc), [""])[0] == [-0.5]
        assert _play(_env(sc), ["<tool_call>{oops</tool_call>"])[0][0] == -0.3
        # always call: every offered tool at the query's record; nothing solves, so the turn scores 0
        arg = sc.query.split()[-1].rstrip("?.")
        calls = []
        for t in sc.tools:
            props = t["function"]["parameters"]["properties"]
            calls.append((t["function"]["name"], {k: arg for k in t["function"]["parameters"]["required"]}))
            assert set(calls[-1][1]) <= set(props)
        rewards, info = _play(_env(sc), [format_hermes(calls), "I could not find it."])
        assert rewards == [0.0, 1.0]
        assert [info["episode"][k] for k in ("solve_p", "solve_r", "solve_f1")] == [0.0, 0.0, 0.0]


def test_missing_info_hides_the_id_and_only_the_user_gives_it(module):
    domain = resolve_ref(find_domains()[module])
    for knobs_i in range(len(KNOBS)):
        for st in _built(module, "missing_info", knobs_i):
            sc = st.scenario
            ask, *chain = sc.subtasks
            assert ask.tool == ASK_USER and chain[0].depends_on == [ask.id] and ASK_USER in sc.tool_names
            assert sc.state["user"] == {"knows": ask.answers[0]}
            query = normalize(sc.query)
            for e in domain.entities:  # the query names no record: no tool call can start without the user
                assert not any(normalize(rid) in query for rid in sc.state[e.table]), (e.name, sc.query)
            assert all(ask.answers[0] not in json.dumps(t) for t in sc.tools)
            out = Toolbox({ASK_USER: sc.source[ASK_USER]}).call(ASK_USER, {"question": "Which one?"}, sc.state)
            assert ask.answers[0] in out.output


def _check_missing_info_baselines(sc) -> None:
    """Never call, call on a guessed id, ask twice: each scores what the missing_info definition says."""
    n = len(sc.subtasks)
    # never call: the answer is not known, so the reply scores 0 with nothing found
    rewards, info = _play(_env(sc), ["I need more information."])
    assert rewards == [0.0]
    assert [info["episode"][k] for k in ("solve_p", "solve_r", "solve_f1")] == [1.0, 0.0, 0.0]
    # always call, never ask: the first gold tool on a guessed id solves nothing
    first = sc.subtasks[1]
    guess = {k: "UNKNOWN" for k in first.arguments}
    rewards, info = _play(_env(sc), [format_hermes([(first.tool, guess)]), "Sorry."])
    assert rewards == [0.0, 0.0] and info["episode"]["solve_r"] == 0.0
    # asking twice: the second ask finds nothing new and lowers precision like any useless call
    env = _env(sc)
    ask = format_hermes([(ASK_USER, {"question": "Which one do you mean?"})])
    rewards, info = _play(env, [ask, ask])
    assert rewards == [1.0, 0.0]
    rewards, info = _play_gold(env)
    assert info["episode"]["solve_r"] == 1.0 and info["episode"]["solve_p"] == pytest.approx(n / (n + 1))


def test_missing_info_baselines_score_what_the_definitions_say(module):
    for st in _built(module, "missing_info", 0):
        _check_missing_info_baselines(st.scenario)


def test_ask_user_in_an_env_with_the_extra_kinds_has_nothing_to_add_when_nothing_is_missing():
    env = gym.make(HOTEL, kind="single_hop", kinds=list(ALL_KINDS))
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        assert ASK_USER in [t["function"]["name"] for t in obs["tools"]] and info["kind"] == "single_hop"
        n = info["n_unsolved"]
        _, r, *_, step = env.step(format_hermes([(ASK_USER, {"question": "Anything else?"})]))
        assert r == 0.0 and "nothing to add" in step["feedback"][0]
        _, done_info = _play_gold(env)
        assert done_info["episode"]["solve_p"] == pytest.approx(n / (n + 1)) and done_info["episode"]["solve_r"] == 1


def test_the_default_mix_is_ftrls_four_kinds_without_ask_user():
    assert KINDS == ("single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop")
    assert ALL_KINDS == KINDS + EXTRA_KINDS
    env = gym.make(HOTEL)
    seen = set()
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        seen.add(info["kind"])
        assert ASK_USER not in [t["function"]["name"] for t in obs["tools"]]
        assert "kinds" not in info["metadata"]["config"] and "user" not in env.unwrapped.state
    assert seen == set(KINDS)


def test_naming_the_default_mix_gives_the_same_scenarios():
    domain = resolve_ref(find_domains()["banking"])
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(20):
        x, y = generate(a, BuildConfig(), domain), generate(b, BuildConfig(kinds=KINDS), domain)
        assert {**x.to_dict(), "metadata": None} == {**y.to_dict(), "metadata": None}


def test_a_mix_with_the_extra_kinds_draws_them_and_records_it():
    env = gym.make(HOTEL, kinds=["single_hop", "irrelevance", "missing_info"])
    kinds = set()
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        kinds.add(info["kind"])
        assert info["metadata"]["config"]["kinds"] == ["single_hop", "irrelevance", "missing_info"]
        assert ASK_USER in [t["function"]["name"] for t in obs["tools"]]
        assert rebuild(info["metadata"]).to_dict() == env.unwrapped.scenario.to_dict()
    assert kinds == {"single_hop", "irrelevance", "missing_info"}


@pytest.mark.parametrize(
    "bad", [{"kind": "abstain"}, {"kinds": []}, {"kinds": ["single_hop", "single_hop"]}, {"kinds": ["nope"]}]
)
def test_bad_kinds_are_refused(bad):
    with pytest.raises(ValueError, match="kind"):
        BuildConfig(**bad).validate()
    with pytest.raises(ValueError, match="kind"):
        make_source(toolgym.registry.manifest_for(HOTEL), **bad)


def test_strict_solve_scores_only_for_the_extra_kinds():
    assert solve_scores_for("irrelevance") is strict_solve_scores and solve_scores_for("missing_info")
    assert all(solve_scores_for(k) is solve_scores for k in (*KINDS, "bfcl_irrelevance"))
    assert strict_solve_scores(0, 0, 0) == (1.0, 1.0, 1.0) and strict_solve_scores(0, 2, 0) == (0.0, 0.0, 0.0)
    assert solve_scores(0, 2, 0) == (0.0, 1.0, 0.0)  # FTRL's rule, kept for every other kind
    assert strict_solve_scores(2, 3, 3) == solve_scores(2, 3, 3)


def test_summaries_keep_the_extra_kinds_out_of_the_overall_row():
    def ep(kind, f1):
        return {"kind": kind, "solve_p": f1, "solve_r": f1, "solve_f1": f1, "return": f1, "turns": 1}

    rows = summarize([ep("single_hop", 1.0), ep("multi_hop", 0.5), ep("irrelevance", 0.0), ep("missing_info", 0.0)])
    assert [r["kind"] for r in rows] == ["multi_hop", "single_hop", "all", "irrelevance", "missing_info"]
    overall = rows[2]
    assert overall["episodes"] == 2 and overall["solve_f1"] == 75.0
    assert [r["kind"] for r in summarize([ep("irrelevance", 1.0)])] == ["irrelevance"]


def test_curriculum_moves_from_ftrls_mix_to_one_with_the_extra_kinds():
    """The kind-mix knob as a curriculum stage: FTRL's four first, then all six (with ask_user offered)."""
    for levels in ({"kinds": [list(KINDS), list(ALL_KINDS)]}, {"kind": ["single_hop", "irrelevance"]}):
        env = gym.make(HOTEL, curriculum=Curriculum.per_knob(levels, window=1, threshold=0.9))
        played = []
        for seed in range(12):
            obs, _ = env.reset(seed=seed)
            _, info = _play_gold(env)
            tools = [t["function"]["name"] for t in obs["tools"]]
            played.append((info["curriculum"]["stage"], env.unwrapped.scenario.kind, ASK_USER in tools))
        assert played[0][0] == 0 and played[0][1] in KINDS and not played[0][2]
        assert all(stage == 1 and ask for stage, _, ask in played[1:])
    assert {kind for _, kind, _ in played[1:]} == {"irrelevance"}


def test_cli_selects_the_extra_kinds(tmp_path):
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "toolgym.cli", "eval", HOTEL, "--kinds", "all", "--agent", "gold"]
    res = subprocess.run([*cmd, "--episodes", "18", "--json", str(out)], capture_output=True, text=True, check=True)
    rows = json.loads(out.read_text())[0]["rows"]
    kinds = [r["kind"] for r in rows]
    assert kinds.index("all") < kinds.index("irrelevance") < kinds.index("missing_info")
    assert all(r["solve_f1"] == 100.0 for r in rows) and "irrelevance" in res.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "toolgym.cli", "show", HOTEL, "--kind", "missing_info", "--seed", "1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ask_user" in shown and "kind=missing_info" in shown
    listing = subprocess.run([sys.executable, "-m", "toolgym.cli", "list"], capture_output=True, text=True).stdout
    assert "on request: irrelevance, missing_info" in listing


@pytest.mark.parametrize("kind", EXTRA_KINDS)
def test_train_and_test_splits_of_the_extra_kinds_are_disjoint(kind):
    domain = resolve_ref(find_domains()["library"])
    keys = {}
    for split in ("train", "test"):
        rng = np.random.default_rng(0)
        got = [generate(rng, BuildConfig(kind=kind, split=split), domain) for _ in range(30)]
        assert all(s.metadata["split"] == split and s.kind == kind for s in got)
        keys[split] = {k for s in got for k in s.metadata["split_keys"]}
    assert keys["train"] and keys["test"] and not keys["train"] & keys["test"]


def test_extra_kind_scenarios_load_back_as_a_static_pack(tmp_path):
    from toolgym.packs import load_scenarios

    domain = resolve_ref(find_domains()["car_rental"])
    rng = np.random.default_rng(2)
    made = [generate(rng, BuildConfig(kinds=ALL_KINDS), domain) for _ in range(12)]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(s.to_json() + "\n" for s in made))
    loaded = load_scenarios(str(path), "toolgym")
    assert [s.to_dict() for s in loaded] == [s.to_dict() for s in made]
    for sc in loaded:
        rewards, info = _play_gold(_env(sc))
        assert rewards[-1] == 1.0 and info["episode"]["solve_f1"] == 1.0


def test_export_cli_takes_the_extra_kinds(tmp_path):
    cmd = [sys.executable, "-m", "toolgym.cli", "export", HOTEL, "--format", "rl", "--episodes", "6"]
    cmd += ["--out", str(tmp_path), "--kinds", "irrelevance,missing_info", "--no-parquet"]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for f in sorted(tmp_path.rglob("*.jsonl")) for line in f.read_text().splitlines()]
    assert rows and {r["kind"] for r in rows} <= set(EXTRA_KINDS)
    bad = subprocess.run([*cmd[:-3], "--kinds", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "kinds are" in bad.stderr


# ------------------------------------------------------------------------------------------------ FlightBooking
# The hand-written domain takes the same kind knobs, with the same ask_user and reward hooks.

FLIGHT = "ToolGym/FlightBooking-v0"
FLIGHT_KNOBS = ({}, {"distractors": 12}, {"hops": 4}, {"distractors": 0, "split": "test"})


@cache
def _flight(kind: str, knobs_i: int) -> tuple[tuple[Scenario, list], ...]:
    """FlightBooking scenarios of ``kind`` from seeds 0..24, each with the sub-tasks its query was composed from
    (for an irrelevance scenario: the hidden question, which the scenario itself does not hold)."""
    from toolgym.construct.domains import flight_booking as fb

    config = fb.FlightBookingConfig(kind=kind, **FLIGHT_KNOBS[knobs_i])
    out = []
    for seed in SEEDS:
        composed = []
        real = fb._compose

        def spy(*args, real=real, composed=composed):
            got = real(*args)
            composed.append(got)
            return got

        fb._compose = spy
        try:
            sc = fb.generate(np.random.default_rng(seed), config)
        finally:
            fb._compose = real
        out.append((sc, [s for s in composed if s is not None][-1][0]))
    return tuple(out)


def _flight_values(state: dict, schema: dict) -> list:
    """Every value of the world a FlightBooking parameter could take (enums, ids, codes, names, dates, seats)."""
    if "enum" in schema:
        return list(schema["enum"])
    desc, pattern = schema.get("description", ""), schema.get("pattern", "")
    if pattern.startswith("^FL"):
        return list(state["flights"])
    if pattern.startswith("^BK"):
        return list(state["bookings"])
    if "airport" in desc.lower() or pattern == "^[A-Z]{3}$":
        return list(state["airports"])
    if "airline" in desc.lower():
        return list(state["airlines"])
    if "YYYY" in desc:
        return sorted({f["date"] for f in state["flights"].values()})
    if "Seat" in desc:
        return ["10A", "14B", "18C", "22D", "39F", *(b["seat"] for b in state["bookings"].values())]
    return list(state["passengers"])


def _flight_probes(state: dict, tool: dict) -> list[dict]:
    import itertools

    params = tool["function"]["parameters"]
    names = list(params["properties"])
    pools = [_flight_values(state, params["properties"][n]) for n in names]
    calls = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*pools)]
    required = params.get("required", [])
    optional = [n for n in names if n not in required]
    if optional:  # and each optional parameter left out
        calls += [{k: v for k, v in c.items() if k not in optional} for c in calls[:: len(pools[-1]) or 1]]
    return calls


@pytest.mark.parametrize("knobs_i", range(len(FLIGHT_KNOBS)))
@pytest.mark.parametrize("kind", EXTRA_KINDS)
def test_flight_gold_scores_the_maximum(kind, knobs_i):
    for sc, _ in _flight(kind, knobs_i):
        assert sc.kind == kind and ASK_USER in sc.tool_names
        rewards, info = _play_gold(_env(sc))
        calls = [len(turn) for turn in sc.gold_plan()]
        assert rewards == pytest.approx([2 * p / (p + 1) for p in calls] + [1.0])
        episode = info["episode"]
        assert (episode["solve_p"], episode["solve_r"], episode["solve_f1"], episode["state_ok"]) == (1, 1, 1, 1)


@pytest.mark.parametrize("knobs_i", [0, 1])
def test_flight_irrelevance_offers_no_tool_that_answers(knobs_i):
    """Every offered tool, on every value of the world for each parameter, never returns the hidden answer."""
    from toolgym.construct.domains import flight_booking as fb

    seen = set()
    # with every tool offered the probes are many (book_flight: flights x passengers x cabins): fewer seeds then
    for sc, (hidden,) in _flight("irrelevance", knobs_i)[: 25 if knobs_i == 0 else 8]:
        assert sc.subtasks == [] and sc.answer == "" and hidden.tool not in sc.tool_names
        seen.add(hidden.tool)
        step = next(s for s in fb.WITHHELD if fb._STEPS[s][0] == hidden.tool)
        assert not set(fb.WITHHELD[step]) & set(sc.tool_names)
        assert len(sc.tools) == FLIGHT_KNOBS[knobs_i].get("distractors", 3) + 2  # as many as single_hop, + ask_user
        assert set(sc.tool_names) & set(fb.CORE_TOOLS)  # a real tool of the domain
        # the withheld tool would answer: the probes look for the right thing
        out = Toolbox({hidden.tool: fb.TOOL_SOURCE}).call(hidden.tool, hidden.arguments, sc.fresh_state()).output
        assert all(answer_in_output(out, a) for a in hidden.answers)
        reads = sc.fresh_state()  # a read leaves the world as it is: one copy serves them all
        for tool in sc.tools:
            name = tool["function"]["name"]
            box = Toolbox({name: sc.source[name]})
            for args in _flight_probes(sc.state, tool):
                out = box.call(name, args, sc.fresh_state() if name in fb.WRITE_TOOLS else reads).output
                assert not any(answer_in_output(out, a) for a in hidden.answers), (name, args, hidden)
    assert len(seen) >= 3


def test_flight_irrelevance_baselines_score_what_the_definitions_say():
    for sc, _ in _flight("irrelevance", 0):
        rewards, info = _play(_env(sc), ["None of the tools I have can answer that, sorry."])
        assert rewards == [1.0] and info["reward_components"]["answer_correct"] == 1.0
        assert [info["episode"][k] for k in ("solve_p", "solve_r", "solve_f1")] == [1.0, 1.0, 1.0]
        assert _play(_env(sc), [""])[0] == [-0.5]
        # always call: every offered tool on the first value of the world for each parameter
        calls = [(t["function"]["name"], _flight_probes(sc.state, t)[0]) for t in sc.tools]
        rewards, info = _play(_env(sc), [format_hermes(calls), "I could not find it."])
        assert rewards == [0.0, 1.0]
        assert [info["episode"][k] for k in ("solve_p", "solve_r", "solve_f1")] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("knobs_i", range(len(FLIGHT_KNOBS)))
def test_flight_missing_info_hides_the_id_and_only_the_user_gives_it(knobs_i):
    lengths = set()
    for sc, _ in _flight("missing_info", knobs_i):
        ask, *chain = sc.subtasks
        lengths.add(len(chain))
        assert ask.tool == ASK_USER and chain[0].depends_on == [ask.id] and ask.arguments["question"].strip()
        assert sc.state["user"] == {"knows": ask.answers[0]}
        assert ask.answers[0] in chain[0].arguments.values()
        query = normalize(sc.query)
        assert "my booking" in query or "my flight" in query
        for table in ("bookings", "flights"):  # the query names no booking or flight: the user must say which
            assert not any(normalize(rid) in query for rid in sc.state[table]), sc.query
        assert all(ask.answers[0] not in json.dumps(t) for t in sc.tools)
        out = Toolbox({ASK_USER: sc.source[ASK_USER]}).call(ASK_USER, {"question": "Which one?"}, sc.state)
        assert ask.answers[0] in out.output
    assert lengths == {1, min(FLIGHT_KNOBS[knobs_i].get("hops", 2), 3)}  # no chain from a booking/flight is longer


def test_flight_missing_info_baselines_score_what_the_definitions_say():
    for sc, _ in _flight("missing_info", 0):
        _check_missing_info_baselines(sc)


def test_flight_ask_user_is_the_spec_built_domains_tool():
    from toolgym.construct.deploy import tool_source
    from toolgym.construct.document import ask_function

    env = gym.make(FLIGHT, kind="single_hop", kinds=list(ALL_KINDS))
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        sc = env.unwrapped.scenario
        assert info["kind"] == "single_hop" and "user" not in sc.state
        assert sc.source[ASK_USER] == tool_source(ask_function())
        assert next(t for t in obs["tools"] if t["function"]["name"] == ASK_USER) == ask_function().schema()
        n = info["n_unsolved"]
        _, r, *_, step = env.step(format_hermes([(ASK_USER, {"question": "Anything else?"})]))
        assert r == 0.0 and "nothing to add" in step["feedback"][0]
        _, done_info = _play_gold(env)
        assert done_info["episode"]["solve_p"] == pytest.approx(n / (n + 1)) and done_info["episode"]["solve_r"] == 1


@pytest.mark.parametrize("env_id", [FLIGHT, "ToolGym/Mixed-v1"])
def test_flight_default_mix_is_unchanged(env_id):
    """No extra kind and no ask_user by default; naming FTRL's four draws the very same scenarios."""
    plain, named = gym.make(env_id), gym.make(env_id, kinds=list(KINDS))
    seen = set()
    for seed in range(40):
        obs, info = plain.reset(seed=seed)
        seen.add(info["kind"])
        assert ASK_USER not in [t["function"]["name"] for t in obs["tools"]]
        assert "user" not in plain.unwrapped.state
        a, b = plain.unwrapped.scenario, (named.reset(seed=seed), named.unwrapped.scenario)[1]
        if a.metadata["domain"] == "FlightBooking":
            assert "kinds" not in a.metadata and b.metadata["kinds"] == list(KINDS)
        assert {**a.to_dict(), "metadata": None} == {**b.to_dict(), "metadata": None}
    assert seen == set(KINDS)


def test_mixed_takes_the_extra_kinds_in_every_member_flightbooking_included():
    env = gym.make("ToolGym/Mixed-v1", kinds=["single_hop", "irrelevance", "missing_info"])
    got = set()
    for seed in range(80):
        obs, _ = env.reset(seed=seed)
        sc = env.unwrapped.scenario
        got.add((sc.metadata["domain"], sc.kind))
        assert ASK_USER in [t["function"]["name"] for t in obs["tools"]]
        _, done = _play_gold(env)
        assert done["episode"]["solve_f1"] == 1.0
    assert {k for d, k in got if d == "FlightBooking"} == {"single_hop", "irrelevance", "missing_info"}
    assert {k for _, k in got} == {"single_hop", "irrelevance", "missing_info"}


@pytest.mark.parametrize(
    "bad", [{"kind": "abstain"}, {"kinds": []}, {"kinds": ["single_hop", "single_hop"]}, {"kinds": ["nope"]}]
)
def test_flight_bad_kinds_are_refused(bad):
    with pytest.raises(ValueError, match="kind"):
        gym.make(FLIGHT, **bad)


def test_flight_and_mixed_manifests_list_the_kind_knobs():
    """FlightBooking's manifest lists its config's fields; Mixed's knobs are not written down anywhere but read
    from the code: the knobs every member takes (FlightBooking's fields are the narrowest set)."""
    from toolgym.construct.domains.flight_booking import FlightBookingConfig
    from toolgym.registry import env_options, generator_knobs, manifest_for

    fields = {f.name for f in dataclasses.fields(FlightBookingConfig)}
    for env_id in (FLIGHT, "ToolGym/Mixed-v1"):
        m = manifest_for(env_id)
        assert m["kinds"] == list(KINDS) and m["extra_kinds"] == list(EXTRA_KINDS)
        assert set(generator_knobs(env_id)) == fields and set(generator_knobs(env_id)) <= env_options(env_id)
    assert set(manifest_for(FLIGHT)["knobs"]) == fields and "knobs" not in manifest_for("ToolGym/Mixed-v1")
