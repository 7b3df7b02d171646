"""FlightBooking domain: gold plans solve every sub-task, answers are distinctive, output is reproducible."""

from __future__ import annotations

import inspect
import json
import random
from functools import cache

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from RestrictedPython import compile_restricted, limited_builtins, safe_builtins
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import full_write_guard, guarded_iter_unpack_sequence, safer_getattr

from toolgym.construct.domains import flight_booking as fb
from toolgym.reward import answer_in_output
from toolgym.scenario import KINDS, Scenario

CODE = compile(fb.TOOL_SOURCE, "<flight_booking tools>", "exec")


def norm(text: str) -> str:
    return text.lower().replace(",", "").strip()


def toolbox(state: dict) -> dict:
    """Plain-exec stand-in for the sandbox: the tool functions bound to ``state``."""
    ns = {"state": state}
    exec(CODE, ns)
    return ns


def call(ns: dict, name: str, args: dict) -> str:
    return json.dumps(ns[name](**args), ensure_ascii=False)


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(fb.SCHEMAS[name]["function"]["parameters"])


def make(seed: int, **kw) -> Scenario:
    return fb.generate(np.random.default_rng(seed), fb.FlightBookingConfig(**kw))


def config_for(seed: int, kind: str) -> dict:
    return {"kind": kind, "hops": 2 + seed % 3, "parallel": 2 + (seed // 3) % 3, "distractors": seed % 13}


def test_tool_source_compiles_restricted():
    compile_restricted(fb.TOOL_SOURCE, "<tools>", "exec")  # raises SyntaxError on underscore names etc.


def test_tool_source_is_the_text_of_the_tools_module():
    """The tools module imports harmlessly (it only defines), and its text is what the sandbox compiles."""
    from toolgym.construct.tool_code import flight_booking as tools

    assert fb.TOOL_SOURCE == inspect.getsource(tools)
    assert all(inspect.isfunction(getattr(tools, name)) for name in fb.SCHEMAS)


def test_every_schema_has_matching_function():
    ns = toolbox(make(0).fresh_state())
    assert len(fb.SCHEMAS) == len(fb.CORE_TOOLS) + len(fb.NEAR_MISS_TOOLS) == 26
    for name, schema in fb.SCHEMAS.items():
        params = schema["function"]["parameters"]
        signature = inspect.signature(ns[name])
        assert set(params["properties"]) == set(signature.parameters), name
        required = {p.name for p in signature.parameters.values() if p.default is inspect.Parameter.empty}
        assert set(params["required"]) == required, name
        Draft202012Validator.check_schema(params)


@pytest.mark.parametrize("kind", KINDS)
def test_gold_plan_solves_every_subtask(kind):
    """(T1) gold calls in turn order contain their answers; state checks hold; arguments validate."""
    for seed in range(200):
        sc = make(seed, **config_for(seed, kind))
        assert sc.kind == kind and sc.metadata["kind"] == kind
        state = sc.fresh_state()
        ns = toolbox(state)
        for turn in sc.gold_plan():
            for sub in turn:
                assert sub.tool in sc.tool_names
                assert not list(validator(sub.tool).iter_errors(sub.arguments)), (seed, sub)
                out = norm(call(ns, sub.tool, sub.arguments))
                assert '"error"' not in out, (seed, sub, out)
                for answer in sub.answers:
                    assert answer_in_output(out, answer), (seed, sub, out)
        for sub in sc.subtasks:
            assert all(check.holds(state) for check in sub.state_checks), (seed, sub)
        lasts = [s for s in sc.subtasks if not any(s.id in o.depends_on for o in sc.subtasks)]
        for sub in lasts:
            for answer in sub.answers:
                assert answer in sc.answer
        query = norm(sc.query)
        for sub in sc.subtasks:
            for answer in sub.answers:
                assert norm(answer) not in query, (seed, sub.answers, sc.query)
        assert sc.messages == [{"role": "user", "content": sc.query}]
        json.dumps(sc.state)  # plain JSON


@pytest.mark.parametrize("kind", KINDS)
def test_shape_per_kind(kind):
    for seed in range(30):
        cfg = config_for(seed, kind)
        sc = make(seed, **cfg)
        branches = cfg["parallel"] if kind.startswith("parallel") else 1
        hops = cfg["hops"] if kind.endswith("multi_hop") else 1
        assert len(sc.subtasks) == branches * hops
        assert [s.id for s in sc.subtasks] == [f"s{i}" for i in range(1, len(sc.subtasks) + 1)]
        assert len(sc.gold_plan()) == hops
        assert sc.metadata == {
            "domain": "FlightBooking",
            "version": 0,
            "split": None,
            "kind": kind,
            "hops": hops,
            "parallel": branches,
            "distractors": cfg["distractors"],
        }


def test_write_share_and_mix():
    scs = [make(seed) for seed in range(300)]
    with_write = sum(any(s.is_write for s in sc.subtasks) for sc in scs)
    assert 0.2 < with_write / len(scs) < 0.5
    assert {sc.kind for sc in scs} == set(KINDS)
    tools = {s.tool for sc in scs for s in sc.subtasks}
    assert set(fb.CORE_TOOLS) - {"get_seat_availability"} <= tools


def test_determinism_and_variety():
    """(T2) same seed -> same scenario; different seeds -> different worlds, queries, answers, tool orders."""
    for seed in range(20):
        assert make(seed, kind=None).to_json() == make(seed, kind=None).to_json()
    scs = [make(seed, kind="multi_hop") for seed in range(50)]
    assert len({sc.query for sc in scs}) >= 45
    assert len({sc.answer for sc in scs}) >= 45
    assert len({json.dumps(sc.state, sort_keys=True) for sc in scs}) == 50
    assert len({tuple(sc.tool_names) for sc in scs}) >= 40
    assert len({sc.id for sc in scs}) == len({(sc.query, sc.answer) for sc in scs})


def other_arguments(sub, state: dict, pick: random.Random) -> dict | None:
    """The gold arguments with the entity swapped for another one of the same type from the state."""
    args = dict(sub.arguments)
    if sub.tool == "search_flights":
        gold = (args["origin"], args["destination"], args["date"])
        combos = {(f["origin"], f["destination"], f["date"]) for f in state["flights"].values()}
        combos = sorted(combos - {gold})
        args["origin"], args["destination"], args["date"] = pick.choice(combos)
        return args
    pools = {
        "flight_id": state["flights"],
        "booking_id": state["bookings"],
        "airline_code": state["airlines"],
        "code": state["airports"],
        "name": state["passengers"],
    }
    for key, pool in pools.items():
        if key in args:
            args[key] = pick.choice(sorted(set(pool) - {args[key]}))
            return args
    return None


def test_answers_are_not_guessable():
    """(T3) the gold tool on another entity's arguments does not yield the expected answers."""
    pick = random.Random(0)
    total = leaked = 0
    for kind in KINDS:
        for seed in range(120):
            sc = make(seed, **config_for(seed, kind))
            state = sc.fresh_state()
            ns = toolbox(state)
            for turn in sc.gold_plan():
                for sub in turn:
                    alt = other_arguments(sub, state, pick)
                    if alt is not None:
                        # writes run on a copy: the gold call comes next
                        twin = toolbox(json.loads(json.dumps(state))) if sub.tool in fb.WRITE_TOOLS else ns
                        out = norm(call(twin, sub.tool, alt))
                        total += 1
                        leaked += all(answer_in_output(out, a) for a in sub.answers)
                    call(ns, sub.tool, sub.arguments)
            if kind.endswith("multi_hop"):
                later = [s for s in sc.subtasks if s.depends_on]
                assert later and all(norm(a) not in norm(sc.query) for s in sc.subtasks for a in s.answers)
    assert total > 1000
    assert leaked / total < 0.05, (leaked, total)


def test_config_validation_and_distractors():
    """(T4) bad knobs raise ValueError; ``distractors=k`` offers needed tools plus exactly k others."""
    bad = [
        {"kind": "two_hop"},
        {"hops": 1},
        {"hops": 5},
        {"parallel": 1},
        {"parallel": 5},
        {"distractors": -1},
        {"distractors": 13},
        {"hops": 2.0},
        {"distractors": True},
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            fb.FlightBookingConfig(**kw).validate()
        with pytest.raises(ValueError):
            make(0, **kw)
    fb.FlightBookingConfig().validate()
    for k in range(13):
        for seed in range(6):
            sc = make(seed, kind="parallel_multi_hop", hops=4, parallel=4, distractors=k)
            needed = {s.tool for s in sc.subtasks}
            assert len(sc.tool_names) == len(set(sc.tool_names)) == len(needed) + k
            assert needed <= set(sc.tool_names)
            assert set(sc.source) == set(sc.tool_names)
            assert all(src is fb.TOOL_SOURCE for src in sc.source.values())


def test_wrong_arguments_return_errors():
    """(T5) localized deployment: clear errors for unknown ids, bad cabins, impossible writes."""
    sc = make(1)
    state = sc.fresh_state()
    ns = toolbox(state)
    fid = next(iter(state["flights"]))
    bid = next(b for b, rec in state["bookings"].items() if rec["paid"])
    cases = [
        ("get_flight_details", {"flight_id": "FL0000"}),
        ("get_flight_details", {"flight_id": 42}),
        ("get_fare", {"flight_id": fid, "cabin": "first"}),
        ("get_fare", {"flight_id": "nope", "cabin": "economy"}),
        ("get_seat_availability", {"flight_id": fid, "cabin": "first"}),
        ("search_flights", {"origin": "XXX", "destination": "YYY", "date": "2026-01-01"}),
        ("get_booking", {"booking_id": "BK0000"}),
        ("get_baggage_policy", {"airline_code": "ZZ"}),
        ("get_airport_info", {"code": "QQQ"}),
        ("find_bookings_by_passenger", {"name": "Nobody Here"}),
        ("book_flight", {"flight_id": fid, "passenger": "Nobody Here", "cabin": "economy"}),
        ("book_flight", {"flight_id": fid, "passenger": next(iter(state["passengers"])), "cabin": "first"}),
        ("pay_booking", {"booking_id": bid, "method": "card"}),  # already paid
        ("pay_booking", {"booking_id": bid, "method": "cash"}),
        ("change_seat", {"booking_id": bid, "seat": "99Z"}),
    ]
    for name, args in cases:
        result = ns[name](**args)
        assert isinstance(result, dict) and "error" in result and result["error"], (name, args, result)
    assert "error" not in ns["cancel_booking"](bid)
    assert "already cancelled" in ns["cancel_booking"](bid)["error"]


def test_near_miss_tools_never_leak_answers():
    """Near-miss distractors return plausible data, never a sub-task's answer."""
    pick = random.Random(1)
    for seed in range(60):
        sc = make(seed, kind="parallel_multi_hop", distractors=12)
        state = sc.fresh_state()
        ns = toolbox(state)
        answers = [norm(a) for s in sc.subtasks for a in s.answers]
        for name in fb.NEAR_MISS_TOOLS:
            props = fb.SCHEMAS[name]["function"]["parameters"]["properties"]
            args = {}
            for key, spec in props.items():
                if "enum" in spec:
                    args[key] = pick.choice(spec["enum"])
                elif key == "flight_id":
                    args[key] = pick.choice(sorted(state["flights"]))
                elif key == "booking_id":
                    args[key] = pick.choice(sorted(state["bookings"]))
                elif key == "airline_code":
                    args[key] = pick.choice(sorted(state["airlines"]))
                else:
                    args[key] = pick.choice(sorted(state["airports"]))
            out = norm(call(ns, name, args))
            assert '"error"' not in out, (name, args, out)
            # echoing the caller's own argument reveals nothing
            echoed = [norm(str(v)) for v in args.values()]
            assert not [a for a in answers if a in out and not any(a in e for e in echoed)], (name, args, out)


def test_tools_run_under_restricted_python():
    """The tools only need guarded builtins (+ sorted): run gold plans through RestrictedPython's guards."""
    code = compile_restricted(fb.TOOL_SOURCE, "<tools>", "exec")
    builtins = {**safe_builtins, **limited_builtins, "sorted": sorted}
    for seed in range(25):
        sc = make(seed, kind="parallel_multi_hop", hops=3)
        state = sc.fresh_state()
        ns = {
            "__builtins__": builtins,
            "__name__": "tools",
            "__metaclass__": type,
            "_getattr_": safer_getattr,
            "_getitem_": default_guarded_getitem,
            "_getiter_": default_guarded_getiter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_write_": full_write_guard,
            "state": state,
        }
        exec(code, ns)
        for turn in sc.gold_plan():
            for sub in turn:
                out = norm(json.dumps(ns[sub.tool](**sub.arguments), ensure_ascii=False))
                assert all(answer_in_output(out, a) for a in sub.answers), (sub, out)
        assert all(c.holds(state) for s in sc.subtasks for c in s.state_checks)


def test_world_names_are_distinctive():
    for seed in range(50):
        state = make(seed).state
        names = [n.lower() for n in state["passengers"]]
        cities = [a["city"].lower() for a in state["airports"].values()]
        for group in (names, cities):
            assert not [(a, b) for a in group for b in group if a != b and a in b]
        assert len({f["gate"] for f in state["flights"].values()}) == len(state["flights"])
        assert len({b["seat"] for b in state["bookings"].values()}) == len(state["bookings"])
