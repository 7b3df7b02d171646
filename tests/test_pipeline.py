"""The five-stage pipeline on spec-based domains: stage outputs, gold plans through the env, knobs, split, CLI."""

from __future__ import annotations

import json
import random

import gymnasium as gym
import numpy as np
import pytest

import toolgym
from toolgym.construct import deploy as deploy_mod
from toolgym.construct.cli import check_domain, save_stages, write_manifest
from toolgym.construct.decompose import Decomposition, in_split, split_bucket
from toolgym.construct.document import Documents
from toolgym.construct.integrate import Integrated
from toolgym.construct.pipeline import (
    BuildConfig,
    BuildStats,
    Stages,
    build,
    find_domains,
    generate,
    rebuild,
    resolve_domain,
)
from toolgym.construct.scale import Scaled
from toolgym.construct.spec import validate_domain
from toolgym.packs import PackError, read_manifest
from toolgym.registry import make_source
from toolgym.sandbox import Toolbox
from toolgym.scenario import KINDS, Scenario

ENV_ID = "ToolGym/HotelBooking-v1"
DOMAIN_REF = "toolgym.construct.domains.hotel_booking:DOMAIN"
DOMAIN = resolve_domain(DOMAIN_REF)
SETTINGS = [
    {},
    {"integrate": False},
    {"generalize": 1},
    {"generalize": 2},
    {"type_generalize": 1},
    {"type_generalize": 2, "distractors": 0},
    {"expand": 1, "distractors": 6},
    {"expand": 2, "type_generalize": 2, "generalize": 2, "distractors": 6},
    {"integrate": False, "generalize": 1, "type_generalize": 2, "expand": 2, "distractors": 12},
    {"hops": 3, "parallel": 3, "write_share": 1.0},
]


def stages(seed: int = 0, **knobs) -> Stages:
    rng = np.random.default_rng(seed)
    while True:
        got = build(int(rng.integers(0, 2**63 - 1)), BuildConfig(**knobs), DOMAIN, keep_stages=True)
        if got is not None:
            return got


def scenarios(n: int, seed: int = 0, **knobs) -> list[Scenario]:
    rng = np.random.default_rng(seed)
    return [generate(rng, BuildConfig(**knobs), DOMAIN) for _ in range(n)]


def play_gold(env) -> tuple[float, dict]:
    done, last, info = False, None, {}
    while not done:
        _, last, term, trunc, info = env.step(env.unwrapped.gold_actions()[0])
        done = term or trunc
    return last, info["episode"]


def test_domain_spec_is_valid_and_discovered():
    validate_domain(DOMAIN)
    assert find_domains()["hotel_booking"] == DOMAIN_REF
    assert ENV_ID in toolgym.registered_ids()


@pytest.mark.parametrize("kind", KINDS)
def test_stage_outputs_round_trip_through_json(kind):
    st = stages(kind=kind, generalize=1, expand=1, type_generalize=1, write_share=1.0)
    for name, cls in (
        ("decomposition", Decomposition),
        ("documents", Documents),
        ("integrated", Integrated),
        ("scaled", Scaled),
        ("scenario", Scenario),
    ):
        obj = getattr(st, name)
        data = json.loads(json.dumps(obj.to_dict()))
        assert cls.from_dict(data).to_dict() == obj.to_dict(), name


def test_stages_are_what_the_paper_describes():
    st = stages(kind="parallel_multi_hop", hops=2, distractors=4)
    dec = st.decomposition
    assert len(dec.branches) == 2 and all(len(b) == 2 for b in dec.branches)
    for branch in dec.branches:  # call k's argument is call k-1's answer
        first, second = (dec.subquestion(q) for q in branch)
        assert second.depends_on == [first.id] and second.argument == first.answer
    assert len(st.documents.functions) == len(dec.subquestions)  # one narrow document per sub-question
    assert all(f.name.startswith("get_") or f.op == "update" for f in st.documents.functions)
    assert len(st.integrated.functions) <= len(st.documents.functions)
    assert set(st.integrated.mapping) == {f.name for f in st.documents.functions}
    assert len(st.scaled.distractors) == 4
    assert len(st.scenario.tools) == len(st.integrated.functions) + 4


@pytest.mark.parametrize("knobs", SETTINGS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "default")
@pytest.mark.parametrize("kind", KINDS)
def test_gold_plan_scores_the_maximum(kind, knobs):
    env = gym.make(ENV_ID, kind=kind, **knobs)
    for seed in range(4):
        env.reset(seed=seed)
        last, episode = play_gold(env)
        assert episode["solve_f1"] == 1.0 and last == 1.0 and episode["state_ok"] == 1.0


def test_procedural_source_with_explicit_domain():
    from toolgym import ProceduralSource, ToolEnv
    from toolgym.construct.pipeline import generate as procedural_generate

    source = ProceduralSource("HotelBooking", lambda rng, cfg: procedural_generate(rng, cfg, DOMAIN_REF), BuildConfig())
    env = ToolEnv(source)
    env.reset(seed=3)
    last, episode = play_gold(env)
    assert episode["solve_f1"] == 1.0 and last == 1.0


def test_writes_change_the_world_and_are_checked():
    sc = scenarios(1, kind="multi_hop", write_share=1.0)[0]
    write = [s for s in sc.subtasks if s.state_checks]
    assert len(write) == 1 and not all(c.holds(sc.state) for c in write[0].state_checks)
    assert write[0].answers[0][:2].isalpha() and write[0].answers[0][2:].isdigit()  # <prefix><counter>


def test_same_seed_same_scenario_and_seeds_vary():
    a = scenarios(5, seed=11)
    b = scenarios(5, seed=11)
    assert [s.digest() for s in a] == [s.digest() for s in b]
    c = scenarios(5, seed=12)
    assert len({s.digest() for s in a + c}) == 10
    assert len({s.query for s in scenarios(30, seed=1)}) >= 25


def test_rebuild_from_metadata():
    for sc in scenarios(6, seed=5, generalize=2, expand=1):
        meta = sc.metadata
        assert meta["domain"] == "HotelBooking" and meta["version"] == 1 and meta["kind"] == sc.kind
        assert meta["config"]["generalize"] == 2 and meta["domain_ref"] == DOMAIN_REF
        assert rebuild(meta).digest() == sc.digest()


def _params(sc: Scenario) -> dict[str, dict]:
    return {t["function"]["name"]: t["function"]["parameters"] for t in sc.tools}


def _gold_tools(sc: Scenario) -> set[str]:
    return {s.tool for s in sc.subtasks}


def test_knobs_visibly_change_the_tools():
    base = scenarios(20, seed=2, kind="single_hop")
    narrow = scenarios(20, seed=2, kind="single_hop", integrate=False)
    assert all(any(t.count("_") >= 2 for t in _gold_tools(s)) for s in narrow)  # get_<entity>_<attr>
    assert all(_gold_tools(s) <= {"get_hotel", "get_guest", "get_reservation"} for s in base)

    gen1 = scenarios(20, seed=2, kind="single_hop", generalize=1)
    for s in gen1:
        for sub in s.subtasks:
            assert "fields" in _params(s)[sub.tool]["properties"] and sub.arguments["fields"]
    gen2 = scenarios(10, seed=2, kind="multi_hop", generalize=2, write_share=1.0)
    assert all(_gold_tools(s) == {"lookup_record", "manage_reservation"} for s in gen2)

    typed = scenarios(10, seed=2, type_generalize=1)
    for s in typed:
        for sub in s.subtasks:
            props = _params(s)[sub.tool]["properties"]
            assert any("pattern" in p or "enum" in p for p in props.values())
    typed2 = scenarios(10, seed=2, type_generalize=2, kind="single_hop")
    for s in typed2:
        for sub in s.subtasks:
            props = _params(s)[sub.tool]["properties"]
            assert any(p.get("type") == "array" for p in props.values())
            assert any(isinstance(v, list) for v in sub.arguments.values())

    expanded = scenarios(10, seed=2, expand=2)
    for s, b in zip(expanded, scenarios(10, seed=2), strict=True):
        for params in _params(s).values():
            assert "locale" in params["required"] and len(params["properties"]) >= 3
        assert all(sub.arguments["locale"] == "en-US" for sub in s.subtasks)
        assert len(s.tools) == len(b.tools)

    for k in (0, 2, 6):
        for s in scenarios(5, seed=3, distractors=k):
            assert len(s.tools) - len(_gold_tools(s)) == k


def test_distractors_look_alike_but_do_not_answer():
    for s in scenarios(20, seed=4, distractors=8):
        names = set(s.tool_names)
        gold = _gold_tools(s)
        assert any(n.endswith(("_info", "_details", "_summary", "_overview")) for n in names - gold)
        state = s.fresh_state()
        answers = [a for sub in s.subtasks for a in sub.answers]
        for name in names - gold:
            params = _params(s)[name]
            if params["properties"].keys() - {"hotel_id", "guest_id", "reservation_id"}:
                continue
            key = next(iter(params["properties"]))
            table = {"hotel_id": "hotels", "guest_id": "guests", "reservation_id": "reservations"}[key]
            box = Toolbox({name: s.source[name]})
            for rid in list(state[table])[:4]:
                out = box.call(name, {key: rid}, state).output
                assert not any(a in out for a in answers if a != rid and a not in state[table]), (name, out)


def test_wrong_arguments_return_an_error_dict():
    for s in scenarios(12, seed=6, generalize=1, type_generalize=1, expand=1, distractors=6):
        state = s.fresh_state()
        box = Toolbox(s.source)
        for sub in s.subtasks:
            args = {k: ("ZZ0000" if k.endswith("_id") else v) for k, v in sub.arguments.items()}
            out = box.call(sub.tool, args, state)
            assert out.ok and "error" in json.loads(out.output), out.output
        for name, params in _params(s).items():
            key = next(k for k in params["properties"] if k.endswith("_id") or k.endswith("_ids"))
            args = {p: ("nope" if p == key else None) for p in params["required"]}
            if "record_type" in args:
                args["record_type"] = "hotel"
            out = box.call(name, args, state)
            assert "error" in json.loads(out.output), (name, out.output)


def test_identical_functions_have_identical_source():
    seen: dict[str, str] = {}
    for s in scenarios(30, seed=8, generalize=1):
        for name, schema in _params(s).items():
            if name == "get_hotel" and set(schema["properties"]) == {"hotel_id", "fields"}:
                seen.setdefault(name, s.source[name])
                assert s.source[name] == seen[name]
    assert seen


def test_verification_rejects_broken_scenarios():
    st = stages(seed=9, kind="multi_hop")
    sc, dec, scaled = st.scenario, st.decomposition, st.scaled
    tables = {"hotel": "hotels", "guest": "guests", "reservation": "reservations"}
    assert deploy_mod.verify(sc, dec, scaled, tables, random.Random(0)) is None
    bad = Scenario.from_dict(sc.to_dict())
    bad.subtasks[-1].answers = ["nothing like this"]
    assert deploy_mod.verify(bad, dec, scaled, tables, random.Random(0)) == "gold_answer_missing"
    bad = Scenario.from_dict(sc.to_dict())
    bad.subtasks[0].arguments = {k: "ZZ0000" if isinstance(v, str) else v for k, v in bad.subtasks[0].arguments.items()}
    assert deploy_mod.verify(bad, dec, scaled, tables, random.Random(0)) in (
        "gold_call_error",
        "gold_arguments_invalid",
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "triple_hop"},
        {"hops": 1},
        {"hops": 9},
        {"parallel": 1},
        {"distractors": -1},
        {"distractors": 99},
        {"generalize": 3},
        {"expand": -1},
        {"type_generalize": 5},
        {"integrate": "yes"},
        {"write_share": 1.5},
        {"write_share": True},
        {"split": "validation"},
        {"hops": 2.0},
    ],
)
def test_config_validation_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        BuildConfig(**bad).validate()
    with pytest.raises(ValueError):
        gym.make(ENV_ID, **bad)


def test_hops_beyond_the_domain_are_refused_at_make():
    gym.make(ENV_ID, hops=3)
    with pytest.raises(ValueError, match="max_hops"):
        gym.make(ENV_ID, hops=4)


def test_train_and_test_splits_are_disjoint():
    train = scenarios(150, seed=21, split="train")
    test = scenarios(150, seed=21, split="test")
    keys_train = {k for s in train for k in s.metadata["split_keys"]}
    keys_test = {k for s in test for k in s.metadata["split_keys"]}
    assert keys_train and keys_test and not keys_train & keys_test
    assert not {s.id for s in train} & {s.id for s in test}
    assert all(split_bucket(k) < 8 and in_split(k, "train") for k in keys_train)
    assert all(split_bucket(k) >= 8 and in_split(k, "test") for k in keys_test)
    env = gym.make(ENV_ID, split="test")
    _, info = env.reset(seed=0)
    assert info["metadata"]["split"] == "test"


def test_build_stats_count_discards():
    stats = BuildStats()
    rng = np.random.default_rng(0)
    for _ in range(20):
        generate(rng, BuildConfig(kind="parallel_multi_hop", hops=3), DOMAIN, stats)
    assert stats.counts["ok"] == 20 and stats.attempts >= 20


def test_full_verification_is_a_knob_that_changes_no_scenario():
    fast, full = gym.make(ENV_ID), gym.make(ENV_ID, verify="full")
    for seed in range(5):
        (a, ia), (b, ib) = fast.reset(seed=seed), full.reset(seed=seed)
        assert a == b and ia["scenario_id"] == ib["scenario_id"]
        assert "verify" not in ia["metadata"]["config"] and ib["metadata"]["config"]["verify"] == "full"
    with pytest.raises(ValueError, match="verify must be one of"):
        BuildConfig(verify="yes").validate()


def test_build_command_writes_a_manifest_and_stages(tmp_path):
    report = check_domain(DOMAIN_REF, 5)
    assert all(row["verified"] == 5 for row in report["kinds"].values())
    assert report["max_hops"] == 3
    path, changed = write_manifest(DOMAIN_REF, tmp_path, report["max_hops"])
    assert changed and path == tmp_path / "hotel_booking" / "manifest.json"
    m = read_manifest(path)
    assert m["domain"] == DOMAIN_REF and m["generator"] == "toolgym.construct.pipeline:generate"
    shipped = json.loads((toolgym.packs.packs_dir() / "hotel_booking" / "manifest.json").read_text())
    assert {k: v for k, v in m.items() if k != "_dir"} == shipped  # the committed manifest is up to date
    assert write_manifest(DOMAIN_REF, tmp_path, 3) == (path, False)
    src = make_source(m, kind="single_hop")
    assert src.sample(np.random.default_rng(0)).kind == "single_hop"
    files = save_stages(DOMAIN_REF, tmp_path / "stages")
    assert [p.name for p in files] == [f"{n}.json" for n in Stages.FILES]
    assert Scenario.from_dict(json.loads(files[-1].read_text())).subtasks


def test_cli_build_entry(tmp_path, capsys):
    from toolgym.cli import main

    assert main(["build", "--domain", "hotel_booking", "--out", str(tmp_path), "--check", "3"]) == 0
    out = capsys.readouterr().out
    assert "validate_domain ok" in out and (tmp_path / "hotel_booking" / "manifest.json").is_file()
    assert main(["build", "--domain", "no_such_domain", "--out", str(tmp_path)]) == 2


def test_manifest_domain_field_is_checked(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "manifest.json").write_text(
        json.dumps(
            {"name": "X", "version": 0, "type": "procedural", "generator": "a:b", "config": "c:d", "domain": "e"}
        )
    )
    with pytest.raises(PackError, match="domain"):
        read_manifest(folder / "manifest.json")
    (folder / "data.jsonl").write_text("{}\n")
    (folder / "manifest.json").write_text(
        json.dumps({"name": "X", "version": 0, "type": "static", "data": "data.jsonl", "domain": "e:f"})
    )
    with pytest.raises(PackError, match="domain"):
        read_manifest(folder / "manifest.json")


# ------------------------------------------------------------------------ a second domain, declared inline


def _library_world(rng: np.random.Generator) -> dict:
    n_a, n_b, n_m, n_l = 5, 9, 8, 10
    ids = (rng.choice(9000, size=n_a + n_b + n_m, replace=False) + 1000).tolist()
    pages = rng.integers(100, 900, size=n_b).tolist()
    authors = {
        f"AU{ids[i]}": {"author_id": f"AU{ids[i]}", "name": f"Author {chr(65 + i)}{ids[i]}", "country": "X"}
        for i in range(n_a)
    }
    aids = list(authors)
    books = {}
    for i in range(n_b):
        bid = f"BK{ids[n_a + i]}"
        books[bid] = {
            "book_id": bid,
            "title": f"Title {ids[n_a + i]}",
            "isbn": f"978-{ids[n_a + i]}",
            "author_id": aids[i % n_a],
            "pages": pages[i],
        }
    bids = list(books)
    members = {}
    for i in range(n_m):
        mid = f"MB{ids[n_a + n_b + i]}"
        members[mid] = {"member_id": mid, "name": f"Member {mid[2:]}x", "card": f"C-{mid[2:]}", "current_loan": ""}
    mids = list(members)
    loans = {}
    for i in range(n_l):
        lid = f"LN{1000 + i * 7 + int(rng.integers(0, 7))}"
        loans[lid] = {
            "loan_id": lid,
            "book_id": bids[i % n_b],
            "member_id": mids[i % n_m],
            "due_date": f"2025-0{1 + i % 9}-1{i % 10}",
            "status": "active" if i % 3 else "returned",
        }
        members[mids[i % n_m]]["current_loan"] = lid
    return {
        "authors": authors,
        "books": books,
        "members": members,
        "loans": loans,
        "counters": {"renew_loan": int(rng.integers(1000, 9000)), "return_loan": int(rng.integers(1000, 9000))},
    }


def _library():
    from toolgym.construct.spec import Attr, Domain, Entity, Update

    author = Entity(
        "author",
        "authors",
        "author_id",
        "author {author_id}",
        "a book author",
        (Attr("name", "name"), Attr("country", "country", answerable=False)),
        "^AU[0-9]{4}$",
    )
    book = Entity(
        "book",
        "books",
        "book_id",
        "book {book_id}",
        "a catalogued book",
        (
            Attr("title", "title"),
            Attr("isbn", "ISBN"),
            Attr("author_id", "author", ref="author"),
            Attr("pages", "page count", type="integer"),
        ),
    )
    member = Entity(
        "member",
        "members",
        "member_id",
        "member {member_id}",
        "a library member",
        (Attr("name", "name"), Attr("card", "card number"), Attr("current_loan", "current loan", ref="loan")),
    )
    loan = Entity(
        "loan",
        "loans",
        "loan_id",
        "loan {loan_id}",
        "a book loan",
        (
            Attr("book_id", "book", ref="book"),
            Attr("member_id", "member", ref="member"),
            Attr("due_date", "due date"),
            Attr("status", "status", answerable=False, enum=("active", "returned")),
        ),
    )
    updates = (
        Update(
            "renew_loan",
            "loan",
            "Renew an active loan to a new due date.",
            "renew {target} until {value}",
            "RN",
            require={"status": "active"},
            param=Attr("due_date", "due date"),
        ),
        Update(
            "return_loan",
            "loan",
            "Return the book of an active loan.",
            "return {target}",
            "RT",
            sets={"status": "returned"},
            require={"status": "active"},
        ),
    )
    return Domain("Library", 0, "Books, members and loans.", (author, book, member, loan), updates, _library_world)


LIBRARY = _library()


def test_pipeline_problems_name_what_cannot_be_built():
    import dataclasses

    from toolgym.construct.decompose import domain_info, pipeline_problems
    from toolgym.construct.spec import SpecError

    assert pipeline_problems(DOMAIN) == [] and pipeline_problems(LIBRARY) == []
    unnamed = dataclasses.replace(
        LIBRARY, entities=tuple(dataclasses.replace(e, label=e.name) for e in LIBRARY.entities)
    )
    with pytest.raises(SpecError, match="nowhere to start"):
        domain_info(unnamed)


@pytest.mark.parametrize(
    "knobs", [{}, {"integrate": False, "distractors": 8}, {"generalize": 2, "type_generalize": 2, "expand": 2}]
)
@pytest.mark.parametrize("kind", KINDS)
def test_another_domain_builds_and_its_gold_plans_score_the_maximum(kind, knobs):
    from toolgym import ProceduralSource, ToolEnv
    from toolgym.construct.pipeline import generate as procedural_generate

    validate_domain(LIBRARY)
    config = BuildConfig(kind=kind, write_share=0.5, **knobs)
    env = ToolEnv(ProceduralSource("Library", lambda rng, cfg: procedural_generate(rng, cfg, LIBRARY), config))
    for seed in range(4):
        env.reset(seed=seed)
        last, episode = play_gold(env)
        assert episode["solve_f1"] == 1.0 and last == 1.0 and episode["state_ok"] == 1.0
