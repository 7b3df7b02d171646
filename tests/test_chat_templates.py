"""Exported chats render right through the models' own chat templates (TRL's byte copies in trl/chat_templates).

For every template, every assistant turn of every exported episode is rendered, cut out of the rendered text
(the conversation up to the turn with a generation prompt is a prefix of the conversation with it), parsed back
by toolgym's parser with the tools' schemas, and must give the turn's calls exactly; the rendered text of a turn,
played as an action, must earn the gold reward. Templates that express one call per turn (Llama 3.1/3.2 raise,
gpt-oss renders only the first) get the exporter's ``one_call_per_turn`` split. rl prompts render as the sft chat
up to their turn (template tools), or carry the tools and earlier calls as text (hermes tools).
"""

import json
import os

import gymnasium as gym
import pytest
import trl
from jinja2.exceptions import TemplateError
from transformers.utils.chat_template_utils import render_jinja_template

import toolgym  # noqa: F401
from toolgym.calls import parse_action
from toolgym.export import export, read_rows
from toolgym.registry import suite_env_ids

TEMPLATES = os.path.join(os.path.dirname(trl.__file__), "chat_templates")
MULTI_CALL = ("qwen2_5", "qwen3", "qwen3_5_nothink", "glm4moe")  # render several calls per turn
ONE_CALL = ("llama3_1", "llama3_2", "gptoss")
EPISODES = [("ToolGym/FlightBooking-v0", "parallel_multi_hop"), ("ToolGym/Mixed-v1", None)]


def _template(name: str) -> str:
    with open(os.path.join(TEMPLATES, f"{name}.jinja"), encoding="utf-8") as f:
        return f.read()


def _render(template: str, messages: list, tools: list, gen: bool = False) -> str:
    out, _ = render_jinja_template(
        conversations=[messages],
        tools=tools,
        chat_template=template,
        add_generation_prompt=gen,
        bos_token="<s>",
        eos_token="</s>",
    )
    return out[0]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("templates")
    got = {}
    for split_calls in (False, True):
        for env_id, kind in EPISODES:
            knobs = {"kind": kind} if kind else {}
            res = export(env_id, "sft", 4, out / str(split_calls), seed=0, one_call_per_turn=split_calls, **knobs)
            assert split_calls or res.multi_call_rows > 0  # the exporter says which rows one-call templates break
            got.setdefault(split_calls, []).extend(read_rows(res.path))
    return got


@pytest.fixture(scope="module")
def suite_rows(tmp_path_factory):
    """Gold dialogues of the external suites: BFCL multi-turn (several user turns, calls to class methods) and a
    τ-bench domain (played against the scripted user), each also split to one call per turn."""
    pytest.importorskip("bfcl_eval", reason="bfcl-eval is installed by .ci/suites_setup.sh")
    tau = os.path.join(os.path.dirname(__file__), "data", "taubench_retail")
    ids = ["ToolGym/BFCL-multi_turn_base-v0", *suite_env_ids(f"taubench:{tau}")]
    out = tmp_path_factory.mktemp("suite_templates")
    got: dict[bool, list] = {}
    for split_calls in (False, True):
        for env_id in ids:
            res = export(env_id, "sft", 3, out / str(split_calls), seed=0, one_call_per_turn=split_calls)
            got.setdefault(split_calls, []).extend(read_rows(res.path))
    return got


@pytest.mark.parametrize("name", MULTI_CALL + ONE_CALL)
def test_suite_dialogues_render_and_parse_back_to_the_same_calls(name, suite_rows):
    template = _template(name)
    rows = suite_rows[name in ONE_CALL]
    for row in rows:
        for m, parsed in _parsed_turns(template, row):
            assert not parsed.calls or m.get("tool_calls")  # a reply renders as a reply
    assert len({row["env_id"] for row in rows}) == 2


def _parsed_turns(template: str, row: dict):
    """(assistant message, its rendered text parsed back) for every turn, asserting the calls come back exactly."""
    schemas = {t["function"]["name"]: t["function"] for t in json.loads(row["tools"])}
    for _, m, text in _turns(template, row):
        parsed = parse_action(text, frozenset(schemas), "c", schemas)
        want = [(c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls") or []]
        assert [(c.name, c.arguments) for c in parsed.calls] == want, text
        assert not parsed.malformed
        yield m, parsed


def _turns(template: str, row: dict):
    """(message index, the assistant message, its rendered text) for every assistant turn of the row."""
    msgs, tools = row["messages"], json.loads(row["tools"])
    for i, m in enumerate(msgs):
        if m["role"] == "assistant":
            before = _render(template, msgs[:i], tools, gen=True)
            upto = _render(template, msgs[: i + 1], tools)
            assert upto.startswith(before), "the template is not prefix-preserving here"
            yield i, m, upto[len(before) :]


@pytest.mark.parametrize("name", MULTI_CALL + ONE_CALL)
def test_rendered_turns_parse_back_to_the_same_calls(name, rows):
    template = _template(name)
    checked = 0
    for row in rows[name in ONE_CALL]:
        for m, parsed in _parsed_turns(template, row):
            if not m.get("tool_calls"):
                assert row["answer"] in parsed.content
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("name", MULTI_CALL)
def test_rendered_turns_played_as_actions_earn_the_gold_reward(name, rows):
    template = _template(name)
    for row in rows[False][:4]:
        env = gym.make(row["env_id"], **json.loads(row["env_kwargs"]))
        env.reset(seed=row["seed"])
        gold = gym.make(row["env_id"], **json.loads(row["env_kwargs"]))
        gold.reset(seed=row["seed"])
        for _, m, text in _turns(template, row):
            _, reward, *_ = env.step(text)
            _, want, *_ = gold.step(m)
            assert reward == pytest.approx(want)
        assert env.unwrapped.episode_metrics()["solve_f1"] == 1.0


@pytest.mark.parametrize("name", ONE_CALL)
def test_one_call_templates_need_the_split(name, rows):
    """Unsplit, a several-call turn raises (Llama) or loses calls (gpt-oss): why the exporter offers the split."""
    template = _template(name)
    row = next(r for r in rows[False] if r["n_multi_call_turns"])
    try:
        lost = sum(
            len(m["tool_calls"]) - len(parse_action(text, None, "c").calls)
            for _, m, text in _turns(template, row)
            if m.get("tool_calls")
        )
    except TemplateError as exc:
        assert "single tool-call" in str(exc)
    else:
        assert lost > 0


def test_json_string_arguments_render_double_encoded_in_qwen2_5(tmp_path):
    """Why arguments are dicts by default: Qwen2.5's template writes a JSON-string argument as a JSON string."""
    res = export("ToolGym/FlightBooking-v0", "sft", 1, tmp_path, arguments="json", parquet=False)
    row = read_rows(res.path)[0]
    _, m, text = next(t for t in _turns(_template("qwen2_5"), row) if t[1].get("tool_calls"))
    body = json.loads(text.split("<tool_call>")[1].split("</tool_call>")[0])
    assert isinstance(body["arguments"], str) and json.loads(body["arguments"]) == json.loads(
        m["tool_calls"][0]["function"]["arguments"]
    )


@pytest.fixture(scope="module")
def rl_rows(tmp_path_factory):
    """rl rows (template and hermes tools) with the sft rows of the same episodes, plain and split per call."""
    out = tmp_path_factory.mktemp("rl_templates")
    got: dict[bool, list] = {}
    for split_calls in (False, True):
        for env_id, kind in EPISODES:
            knobs = {"kind": kind} if kind else {}
            where = out / f"{split_calls}-{env_id.split('/')[1]}"
            sft = read_rows(
                export(env_id, "sft", 3, where / "sft", seed=0, one_call_per_turn=split_calls, **knobs).path
            )
            by_seed = {row["seed"]: row for row in sft}
            for mode in ("template", "hermes"):
                res = export(
                    env_id, "rl", 3, where / mode, seed=0, one_call_per_turn=split_calls, tools_in_prompt=mode, **knobs
                )
                got.setdefault(split_calls, []).extend((row, by_seed[row["seed"]]) for row in read_rows(res.path))
    return got


@pytest.mark.parametrize("name", MULTI_CALL + ONE_CALL)
def test_rl_prompts_render_as_the_sft_chat_up_to_their_turn(name, rl_rows):
    """An rl prompt with the template's tools is the sft chat cut before its turn, so it renders exactly as that
    prefix (whose assistant turns the tests above parse back); with hermes tools (in the system message) the
    template is given no tools, renders the same turns, and the model still sees every tool's schema."""
    template = _template(name)
    n = 0
    for rl, sft in rl_rows[name in ONE_CALL]:
        tools = json.loads(rl["tools"])
        prompt = rl["prompt"]
        if rl["tools_in_prompt"] == "template":
            cut = len(prompt)
            assert prompt == sft["messages"][:cut] and sft["messages"][cut]["role"] == "assistant"
            assert _render(template, prompt, tools, gen=True) == _render(template, sft["messages"][:cut], tools, True)
        else:  # the harness's text mode: tools in the system message, earlier calls as Hermes text in the chat
            text = _render(template, prompt, None, gen=True)
            assert all(json.dumps(t["function"], ensure_ascii=False) in text for t in tools)
            said = [m for m in prompt if m["role"] == "assistant"]
            gold = [m for m in sft["messages"] if m["role"] == "assistant"][: len(said)]
            for m, g in zip(said, gold, strict=True):
                assert m["content"] in text
                calls = parse_action(m["content"], None, "c").calls
                assert [(c.name, c.arguments) for c in calls] == [
                    (c["function"]["name"], c["function"]["arguments"]) for c in g.get("tool_calls") or []
                ]
        n += 1
    assert n > 20
