"""Pack files: FTRL and toolgym formats load; a broken file fails with one error naming file and field."""

import json

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolgym
from toolgym import PackError, load_scenarios, register_pack
from toolgym.packs import read_manifest

RECORD = {
    "messages": [{"role": "user", "content": "How warm is it in Cairo?"}],
    "tools": json.dumps(
        [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                },
            }
        ]
    ),
    "codes": json.dumps({"get_weather": "def get_weather(city):\n    return {'temp': 31 if city == 'Cairo' else 5}"}),
    "unsolved_set": json.dumps({"get_weather": ["31"]}),
    "answer": "31",
}


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_ftrl_records_load_and_register_as_env(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", [RECORD, {**RECORD, "answer": "5"}])
    (tmp_path / "manifest.json").write_text(
        json.dumps({"name": "MyFTRL", "version": 2, "type": "static", "format": "ftrl", "data": "data.jsonl"})
    )
    env_id = register_pack(tmp_path)
    assert env_id == "ToolGym/MyFTRL-v2"
    env = gym.make(env_id)
    env.reset(seed=0, options={"index": 0})
    _, r, *_ = env.step('<tool_call>{"name": "get_weather", "arguments": {"city": "Cairo"}}</tool_call>')
    assert r == 1.0


def test_toolgym_format_round_trips(tmp_path):
    env = gym.make("ToolGym/FlightBooking-v0")
    scenarios = []
    for seed in range(3):
        env.reset(seed=seed)
        scenarios.append(env.unwrapped.scenario.to_dict())
    path = write_jsonl(tmp_path / "s.jsonl", scenarios)
    loaded = load_scenarios(path)
    assert [s.to_dict() for s in loaded] == scenarios


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.pop("codes"), "codes"),
        (lambda r: r.update(tools="[not json"), "tools"),
        (lambda r: r.update(unsolved_set=json.dumps({"get_weather": "31"})), "unsolved_set"),
        (lambda r: r.update(codes=json.dumps({"other": "def other(): pass"})), "codes"),
        (
            lambda r: r.update(tools=json.dumps([{"type": "function", "function": {"description": "x"}}])),
            "tools[0].function.name",
        ),
        (
            lambda r: r.update(
                tools=json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": 5}}}])
            ),
            "tools[0].function.parameters",
        ),
    ],
)
def test_broken_ftrl_record_names_file_line_and_field(tmp_path, mutate, field):
    bad = dict(RECORD)
    mutate(bad)
    path = write_jsonl(tmp_path / "data.jsonl", [RECORD, bad])
    with pytest.raises(PackError) as err:
        load_scenarios(path, fmt="ftrl")
    assert err.value.field == field
    assert f"{path}:2" in str(err.value) and repr(field) in str(err.value)


def _scenario_record(seed: int = 1) -> dict:
    env = gym.make("ToolGym/Banking-v0")
    env.reset(seed=seed)
    return env.unwrapped.scenario.to_dict()


def _set(path, value):
    def mutate(record):
        node = record
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set(("messages", 0), 1), "messages[0].role"),
        (_set(("state",), []), "state"),
        (_set(("metadata",), "x"), "metadata"),
        (_set(("subtasks", 0, "depends_on"), [["q1"]]), "subtasks[0].depends_on"),
        (_set(("subtasks", 0, "depends_on"), ["nowhere"]), "subtasks[0].depends_on"),
        (_set(("subtasks", 0, "arguments"), "card_id=CD1"), "subtasks[0].arguments"),
        (_set(("subtasks", 0, "state_checks"), [["cards", "CD1"]]), "subtasks[0].state_checks[0]"),
        (_set(("answer",), "the card \ud800"), "answer"),
        (_set(("subtasks", 0, "answers"), ["\udfff"]), "subtasks"),
    ],
)
def test_broken_scenario_record_names_file_line_and_field(tmp_path, mutate, field):
    """What reset and step would trip over (or export as invalid text) fails the load, naming the field."""
    good = _scenario_record()
    bad = json.loads(json.dumps(good))
    mutate(bad)
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad).replace("\\\\u", "\\u") + "\n")
    with pytest.raises(PackError) as err:
        load_scenarios(path)
    assert err.value.field == field and f"{path}:2" in str(err.value)


def test_a_dependency_cycle_fails_the_load(tmp_path):
    record = _scenario_record()
    ids = [s["id"] for s in record["subtasks"]]
    for sub in record["subtasks"]:
        sub["depends_on"] = [i for i in ids if i != sub["id"]] or [sub["id"]]
    with pytest.raises(PackError, match="cycle") as err:
        load_scenarios(write_jsonl(tmp_path / "s.jsonl", [record]))
    assert err.value.field == "subtasks"


def test_a_file_that_is_not_utf8_or_a_json_root_that_is_not_a_list(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps({"answer": "caf\u00e9"}).replace("\\u00e9", "\xe9").encode("latin-1"))
    with pytest.raises(PackError, match="not UTF-8 text") as err:
        load_scenarios(latin)
    assert err.value.where == str(latin)
    root = tmp_path / "root.json"
    root.write_text(json.dumps({"records": []}))
    with pytest.raises(PackError, match="expected a JSON list of records"):
        load_scenarios(root)


def test_broken_json_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(RECORD) + "\n{oops\n")
    with pytest.raises(PackError, match=r"data.jsonl:2: field '<json>'"):
        load_scenarios(path, fmt="ftrl")


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        ({"version": 0, "type": "static", "data": "d.jsonl"}, "name"),
        ({"name": "X", "version": "0", "type": "static", "data": "d.jsonl"}, "version"),
        ({"name": "X", "version": 0, "type": "magic"}, "type"),
        ({"name": "X", "version": 0, "type": "static", "data": "missing.jsonl"}, "data"),
        ({"name": "X", "version": 0, "type": "static", "format": "csv", "data": "d.jsonl"}, "format"),
        ({"name": "X", "version": 0, "type": "procedural", "generator": "nocolon", "config": "a:b"}, "generator"),
    ],
)
def test_broken_manifest_names_file_and_field(tmp_path, manifest, field):
    (tmp_path / "d.jsonl").write_text(json.dumps(RECORD) + "\n")
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(PackError) as err:
        read_manifest(path)
    assert err.value.field == field and str(path) in str(err.value)


def test_shipped_manifests_are_valid():
    root = toolgym.packs.packs_dir()
    for path in sorted(root.glob("*/manifest.json")):
        read_manifest(path)


def test_manifests_and_records_with_the_old_package_name_still_load(tmp_path):
    """Packs saved while the construction package was ``toolgym.build`` keep working, and so does rebuilding a
    record whose metadata names a domain under that name."""
    from toolgym.construct.pipeline import rebuild

    old = {
        "name": "OldHotel",
        "version": 0,
        "type": "procedural",
        "generator": "toolgym.build.procedural:generate",
        "config": "toolgym.build.pipeline:BuildConfig",
        "domain": "toolgym.build.domains.hotel_booking:DOMAIN",
        "max_turns": 20,
    }
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    eid = register_pack(tmp_path)
    old_env = gym.make(eid, kind="multi_hop")
    obs, _ = old_env.reset(seed=3)
    new_env = gym.make("ToolGym/HotelBooking-v1", kind="multi_hop")
    new_obs, _ = new_env.reset(seed=3)
    assert obs["tools"] == new_obs["tools"] and obs["messages"][1:] == new_obs["messages"][1:]
    scenario = new_env.unwrapped.scenario
    meta = {**scenario.metadata, "domain_ref": "toolgym.build.domains.hotel_booking:DOMAIN"}
    assert rebuild(meta).to_dict() == scenario.to_dict()


def _sample_records():
    path = toolgym.packs.packs_dir() / "ftrl_sample" / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _turn_level(record, split):
    """The Lima record after its first turn: the prefix holds the get_country call and its result."""
    call = {"id": "c1", "type": "function", "function": {"name": "get_country", "arguments": '{"city": "Lima"}'}}
    return {
        **record,
        "messages": [
            *record["messages"],
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "Peru"},
        ],
        "unsolved_set": json.dumps({"get_currency": ["Sol"]}),
        "data_source": "ftrl_sample",
        "split": split,
    }


def _ftrl_pack(tmp_path, records):
    write_jsonl(tmp_path / "records.jsonl", records)
    manifest = {"name": "FTRLTurns", "version": 0, "type": "static", "format": "ftrl", "data": "records.jsonl"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return register_pack(tmp_path)


def test_turn_level_records_start_mid_trajectory_and_filter_by_split(tmp_path):
    lima = next(r for r in _sample_records() if "Lima is" in r["messages"][0]["content"])
    eid = _ftrl_pack(tmp_path, [_turn_level(lima, "train"), {**RECORD, "split": "test", "data_source": "x"}])
    env = gym.make(eid, split="train")
    obs, info = env.reset(seed=0)
    assert [m["role"] for m in obs["messages"]] == ["system", "user", "assistant", "tool"]
    assert info["unsolved_set"] == {"get_currency": ["Sol"]}
    assert info["metadata"]["data_source"] == "ftrl_sample" and info["metadata"]["split"] == "train"
    _, reward, _, _, info = env.step(
        '<tool_call>{"name": "get_currency", "arguments": {"country": "Peru"}}</tool_call>'
    )
    assert reward == 1.0 and info["reward_components"]["n_unsolved"] == 0.0
    _, reward, terminated, _, info = env.step("Sol")
    assert terminated and info["episode"]["solve_f1"] == 1.0
    test_env = gym.make(eid, split="test")
    assert test_env.reset(seed=0)[1]["metadata"]["split"] == "test"
    with pytest.raises(ValueError, match=r"no record has split='val'.*\['test', 'train'\]"):
        gym.make(eid, split="val")
    with pytest.raises(TypeError, match="takes only split="):
        gym.make(eid, hops=2)


@pytest.mark.parametrize(
    "messages, field",
    [
        ([], "messages"),
        ([{"role": "robot", "content": "hi"}], "messages[0].role"),
        (
            [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "nope", "content": "x"}],
            "messages[1].tool_call_id",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [{"id": "a"}]}],
            "messages[1].tool_calls[0].function.name",
        ),
    ],
)
def test_broken_prefix_names_the_message(tmp_path, messages, field):
    path = write_jsonl(tmp_path / "r.jsonl", [{**RECORD, "messages": messages}])
    with pytest.raises(PackError) as err:
        load_scenarios(path, "ftrl")
    assert err.value.field == field and f"{path}:1" in str(err.value)


def test_runtime_registrations_replay_in_a_fresh_process(tmp_path):
    """What a Ray worker needs: the ids registered after ``import toolgym`` (an ``ftrl:PATH`` file, a τ-bench
    domain), and only those, replayed in another process make the same envs there."""
    import pickle
    import subprocess
    import sys
    from pathlib import Path

    from toolgym.registry import runtime_registrations, suite_env_ids

    records = tmp_path / "replayed.jsonl"
    write_jsonl(records, [RECORD])
    domain = Path(__file__).parent / "data" / "taubench_retail"
    ids = [*suite_env_ids(f"ftrl:{records}"), *suite_env_ids(f"taubench:{domain}")]
    names = [m["name"] for m in runtime_registrations()]
    assert {"FTRL-replayed", "TauBench-taubench_retail"} <= set(names)
    assert not {"FlightBooking", "BFCL-simple"} & set(names)  # every process registers those itself
    code = (
        "import pickle, sys, gymnasium as gym, toolgym\n"
        "from toolgym.registry import registered_ids, replay_registrations\n"
        "ids, regs = pickle.load(sys.stdin.buffer)\n"
        "assert not set(ids) & set(registered_ids())\n"
        "assert set(ids) <= set(replay_registrations(regs))\n"
        "for e in ids: print(e, gym.make(e).reset(seed=0)[1]['scenario_id'])\n"
    )
    payload = pickle.dumps((ids, runtime_registrations()))
    res = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, check=True)
    here = [f"{e} {gym.make(e).reset(seed=0)[1]['scenario_id']}" for e in ids]
    assert res.stdout.decode().splitlines() == here


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from _paths(v, (*prefix, i))


_RECORD = _scenario_record(2)
_PATHS = [p for p in _paths(_RECORD) if p and p[0] != "source"]  # the sources have their own compile checks
_VALUES = [None, 0, -1, 1.5, "", "x", [], {}, [None], {"a": 1}, True, [["x"]], "\ud800"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PATHS), st.sampled_from(_VALUES), st.booleans()), min_size=1, max_size=3))
def test_a_mutated_record_fails_the_load_or_plays(edits):
    """Whatever a broken record holds, loading raises one PackError naming the file, or the scenario resets and
    steps (gold calls where it has them) without an exception."""
    import tempfile
    from pathlib import Path

    from toolgym.sources import StaticSource

    record = json.loads(json.dumps(_RECORD))
    for path, value, delete in edits:
        node = record
        try:
            for key in path[:-1]:
                node = node[key]
            if delete and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "pack.jsonl"
        file.write_text(json.dumps(record) + "\n")
        try:
            scenarios = load_scenarios(file)
        except PackError as err:
            assert str(file) in str(err)
            return
    env = toolgym.ToolEnv(StaticSource("mutated", scenarios))
    env.reset(seed=0, options={"index": 0})
    has_gold = all(s.arguments is not None for s in scenarios[0].subtasks)
    for action in env.gold_actions() if has_gold else ["no idea"]:
        _, _, terminated, truncated, info = env.step(action)
        json.dumps(info["new_messages"], ensure_ascii=False).encode("utf-8")
        if terminated or truncated:
            break
