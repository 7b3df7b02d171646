"""Pack files: FTRL and toolgym formats load; a broken file fails with one error naming file and field."""

import json

import gymnasium as gym
import pytest

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
    new_env = gym.make("ToolGym/HotelBooking-v0", kind="multi_hop")
    new_obs, _ = new_env.reset(seed=3)
    assert obs["tools"] == new_obs["tools"] and obs["messages"][1:] == new_obs["messages"][1:]
    scenario = new_env.unwrapped.scenario
    meta = {**scenario.metadata, "domain_ref": "toolgym.build.domains.hotel_booking:DOMAIN"}
    assert rebuild(meta).to_dict() == scenario.to_dict()
