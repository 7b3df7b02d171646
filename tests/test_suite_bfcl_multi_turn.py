"""BFCL v4 multi-turn envs: BFCL's classes in the sandbox, checked turn by turn, and compared with BFCL's checker.

Needs the ``bfcl-eval`` package (``bash .ci/suites_setup.sh``); without it every test here fails, naming the
script. BFCL's own checker (``bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker``) imports nothing but
BFCL's backend table and executor, so it is imported as shipped: it executes the real classes in plain Python,
keeping each model's instances in its executor module's globals under names made from the model name and entry
id, so every check here uses a fresh model name and removes its instances afterwards.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter

import gymnasium as gym
import pytest

import toolgym
from toolgym.calls import format_hermes
from toolgym.suites import bfcl, bfcl_multi_turn
from toolgym.suites.bfcl_multi_turn import MAXIMUM_STEP_LIMIT, BFCLMultiTurnEnv, load_entries, missing_results

CATEGORIES = list(bfcl_multi_turn.CATEGORIES)
# BFCL's error types -> the reason toolgym gives the first failing turn.
BFCL_REASONS = {
    "multi_turn:empty_turn_model_response": "empty_turn",
    "multi_turn:instance_state_mismatch": "state",
    "multi_turn:execution_response_mismatch": "response",
}
# Disagreements by design, (entry id, perturbation) -> why; the differential test fails on any other, and on a
# listed one that no longer occurs.
KNOWN_DISAGREEMENTS: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module", autouse=True)
def _bfcl_installed():
    if bfcl.data_dir() is None or not bfcl_multi_turn.manifests():
        pytest.fail(bfcl.missing_message(), pytrace=False)


@pytest.fixture(scope="module")
def envs():
    made = {c: gym.make(f"ToolGym/BFCL-{c}-v0").unwrapped for c in CATEGORIES}
    yield made
    for env in made.values():
        env.close()


def play(env: BFCLMultiTurnEnv, index: int, turns: list[list[tuple[str, dict]]]) -> dict:
    """Play entry ``index`` with the given calls per user turn (one step of calls, then a text reply; a turn
    without calls is the reply alone); returns the last step's info."""
    env.reset(seed=0, options={"index": index})
    info: dict = {}
    for calls in turns:
        if calls:
            _, _, terminated, truncated, info = env.step(format_hermes(calls))
            assert not (terminated or truncated)
        _, _, terminated, truncated, info = env.step("Done.")
    assert terminated and not truncated
    return info


def gold_turns(entry) -> list[list[tuple[str, dict]]]:
    return [[(n, copy.deepcopy(a)) for n, a in turn] for turn in entry.gold]


def first_failure(info: dict) -> tuple[int, str] | None:
    failed = [v for v in info["bfcl_turns"] if not v["passed"]]
    return (failed[0]["turn"], failed[0]["reason"]) if failed else None


# ------------------------------------------------------------------------------------------------ registration
def test_ids_are_registered_and_enumerated_by_the_bfcl_suite():
    ids = toolgym.registered_ids()
    for c in CATEGORIES:
        assert f"ToolGym/BFCL-{c}-v0" in ids
    from toolgym.registry import suite_env_ids

    assert {f"ToolGym/BFCL-{c}-v0" for c in CATEGORIES} <= set(suite_env_ids("bfcl"))


def test_observation_is_the_first_user_turn_and_the_classes_functions(envs):
    env = envs["multi_turn_base"]
    obs, info = env.reset(seed=3)
    entry = env.entry
    assert info["bfcl_id"] == entry.id and info["n_user_turns"] == len(entry.turns)
    assert obs["messages"][-1] == entry.turns[0][-1] and obs["messages"][0]["role"] == "system"
    names = {t["function"]["name"] for t in obs["tools"]}
    expected = {f["name"] for c in entry.involved_classes for f in bfcl_multi_turn.function_docs(c)}
    assert names == expected
    again, _ = env.reset(seed=3)
    assert again["messages"] == obs["messages"]


def test_results_read_as_bfcls_executor_writes_them(envs):
    env = envs["multi_turn_base"]
    env.reset(seed=0, options={"index": 0})  # GorillaFileSystem and TwitterAPI
    _, _, _, _, info = env.step(format_hermes([("cd", {"folder": "document"}), ("cd", {"nope": 1}), ("kill", {})]))
    texts = [m["content"] for m in info["new_messages"][1:]]
    assert texts[0] == '{"current_working_directory": "document"}'
    assert texts[1] == "Error during execution: GorillaFileSystem.cd() got an unexpected keyword argument 'nope'"
    assert texts[2] == "Error during execution: Function call kill is not allowed."
    comp = info["reward_components"]
    assert comp["n_calls"] == 3 and comp["n_unknown_tool"] == 1 and comp["n_tool_errors"] == 2
    assert bfcl_multi_turn.bfcl_result('{"a": "é"}') == '{"a": "\\u00e9"}'
    assert bfcl_multi_turn.bfcl_result('["a", 1]') == "['a', 1]"


def test_omitted_list_defaults_are_fresh_lists(envs):
    """post_tweet keeps its default lists in the tweet and mention extends them: the sandbox keeps defaults
    read-only, so an omitted one is passed as a fresh copy (what a first call in a fresh BFCL process binds)."""
    assert bfcl_multi_turn.mutable_defaults() == {("TwitterAPI", "post_tweet"): {"tags": [], "mentions": []}}
    env = envs["multi_turn_base"]
    entry = next(i for i, e in enumerate(load_entries("multi_turn_base")) if "TwitterAPI" in e.involved_classes)
    env.reset(seed=0, options={"index": entry})
    config = env.entry.initial_config["TwitterAPI"]
    login = ("authenticate_twitter", {"username": config["username"], "password": config["password"]})
    env.step(format_hermes([login, ("post_tweet", {"content": "x"})]))
    tweet_id = next(m for m in reversed(env._messages) if m["role"] == "tool")["content"]
    tweet_id = json.loads(tweet_id)["id"]
    _, _, _, _, info = env.step(format_hermes([("mention", {"tweet_id": tweet_id, "mentioned_usernames": ["@u"]})]))
    assert info["new_messages"][1]["content"] == '{"mention_status": "Users mentioned successfully"}'
    _, _, _, _, info = env.step(format_hermes([("post_tweet", {"content": "y"})]))
    assert json.loads(info["new_messages"][1]["content"])["mentions"] == []


# ------------------------------------------------------------------------------------------------ gold plays
@pytest.mark.parametrize("category", CATEGORIES)
def test_gold_play_passes_every_entry(envs, category):
    env = envs[category]
    failures = []
    for i, entry in enumerate(load_entries(category)):
        info = play(env, i, gold_turns(entry))
        rewards = info["reward_components"]
        if info["bfcl_multi_turn"] != 1.0 or rewards["bfcl_multi_turn"] != 1.0:
            failures.append((entry.id, first_failure(info)))
    assert not failures, failures


def test_gold_agent_turn_by_turn_and_sparse_reward(envs):
    env = envs["multi_turn_base"]
    obs, _ = env.reset(seed=1, options={"index": 2})
    n_turns = len(env.entry.turns)
    rewards, ends = [], 0
    while True:
        obs, reward, terminated, truncated, info = env.step(env.gold_actions()[0])
        rewards.append(reward)
        ends += info["reward_components"]["turn_end"]
        if "bfcl_turn" in info:
            assert info["bfcl_turn"]["passed"]
        if terminated or truncated:
            break
    assert terminated and ends == n_turns and rewards[-1] == 1.0 and set(rewards[:-1]) == {0.0}
    assert info["episode"]["bfcl_multi_turn"] == 1.0 and info["episode"]["turns_passed"] == n_turns
    assert sum(m["role"] == "user" for m in obs["messages"]) == n_turns


# ------------------------------------------------------------------------------------------------ perturbed plays
def test_dropped_call_fails_the_state_check(envs):
    env = envs["multi_turn_base"]
    entry = load_entries("multi_turn_base")[0]
    turns = gold_turns(entry)
    assert [n for n, _ in turns[0]] == ["cd", "mkdir", "mv"]
    del turns[0][1]  # no mkdir: mv renames the file to 'temp' instead of moving it into a new folder
    info = play(env, 0, turns)
    assert info["bfcl_multi_turn"] == 0.0
    first = info["bfcl_turns"][0]
    assert first["reason"] == "state" and first["state_diff"] == {"GorillaFileSystem": ["root"]}


def test_wrong_argument_of_a_read_fails_the_response_check(envs):
    env = envs["multi_turn_base"]
    entry = load_entries("multi_turn_base")[1]
    turns = gold_turns(entry)
    assert turns[2][1] == ("grep", {"file_name": "log.txt", "pattern": "Error"})
    turns[2][1] = ("grep", {"file_name": "log.txt", "pattern": "Warning"})  # same state, another result
    info = play(env, 1, turns)
    assert [v["passed"] for v in info["bfcl_turns"]] == [True, True, False, True]
    failed = info["bfcl_turns"][2]
    assert failed["reason"] == "response" and failed["state_diff"] == {}
    line = "This is a log file. No errors found. Another line. Yet another line. "
    line += "Error: Something went wrong. Final line."
    assert failed["missing"] == [f'{{"matching_lines": ["{line}"]}}']
    assert info["bfcl_multi_turn"] == 0.0 and info["episode"]["turns_passed"] == 3


def test_turn_without_calls_fails_and_an_earlier_result_still_counts(envs):
    env = envs["multi_turn_base"]
    entry = load_entries("multi_turn_base")[1]
    turns = gold_turns(entry)
    info = play(env, 1, [[], *turns[1:]])
    assert info["bfcl_turns"][0]["reason"] == "empty_turn"
    # BFCL's response check reads every turn's results: a call made a turn early still answers the later turn
    assert missing_results(["a", "b", "a"], ["a", "a", "c"]) == ["c"]


def test_too_many_steps_in_a_turn_truncate_and_fail(envs):
    env = envs["multi_turn_base"]
    env.reset(seed=0, options={"index": 1})
    for step in range(MAXIMUM_STEP_LIMIT + 1):
        _, reward, terminated, truncated, info = env.step(format_hermes([("pwd", {})]))
        if step < MAXIMUM_STEP_LIMIT:
            assert not (terminated or truncated)
    assert truncated and not terminated and reward == 0.0
    assert info["bfcl_turn"]["reason"] == "step_limit" and info["bfcl_multi_turn"] == 0.0


def test_copies_rebuild_the_instances_by_replaying_the_episode(envs):
    import pickle

    env = envs["multi_turn_base"]
    entry = load_entries("multi_turn_base")[0]
    turns = gold_turns(entry)
    env.reset(seed=0, options={"index": 0})
    env.step(format_hermes(turns[0]))
    env.step("Done.")
    env.step(format_hermes(turns[1]))
    clone = pickle.loads(pickle.dumps(env))
    for target in (env, clone):
        _, _, _, _, info = target.step("Done.")
        assert info["bfcl_turn"] == {"turn": 1, "passed": True, "reason": "", "state_diff": {}, "missing": []}


def test_miss_func_offers_the_held_out_functions_at_their_turn(envs):
    env = gym.make("ToolGym/BFCL-multi_turn_miss_func-v0").unwrapped
    entry = load_entries("multi_turn_miss_func")[0]
    ((turn, held),) = entry.added.items()
    names = [t["function"]["name"] for t in held]
    obs, _ = env.reset(seed=0, options={"index": 0})
    assert names and not set(names) & {t["function"]["name"] for t in obs["tools"]}
    for t in range(turn):
        if entry.gold[t]:
            env.step(env.gold_actions()[0])
        obs, *_ = env.step("Done.")
    assert obs["messages"][-1] == {"role": "user", "content": bfcl_multi_turn.ADDITIONAL_FUNCTION_PROMPT}
    assert [t["function"]["name"] for t in obs["tools"][-len(names) :]] == names
    assert obs["tools"][: -len(names)] == entry.tools


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown reward"):
        BFCLMultiTurnEnv(reward="ftrl")
    short = gym.make("ToolGym/BFCL-multi_turn_base-v0", max_turns=2).unwrapped
    short.reset(seed=0, options={"index": 1})
    short.step(short.gold_actions()[0])
    _, _, terminated, truncated, info = short.step("Done.")  # the first user turn passed, the episode is cut
    assert truncated and not terminated and info["bfcl_turn"]["passed"] and info["bfcl_multi_turn"] == 0.0
    env = gym.make("ToolGym/BFCL-multi_turn_base-v0", reward="turn_passed").unwrapped
    env.reset(seed=0, options={"index": 1})
    env.step(env.gold_actions()[0])
    assert env.step("Done.")[1] == 1.0


# ------------------------------------------------------------------------------------------------ against BFCL
_NAMES = itertools.count()


@pytest.fixture(scope="module")
def bfcl_checker():
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_checker, multi_turn_utils

    def check(entry, turns: list[list[tuple[str, dict]]]) -> dict:
        model = f"toolgym{next(_NAMES)}"
        # as BFCL's eval_runner decodes a turn: its steps with calls (the closing text step decodes to none)
        decoded = [[[_call_text(n, a) for n, a in calls]] if calls else [] for calls in turns]
        test_entry = {"id": entry.id, "initial_config": entry.initial_config}
        test_entry["involved_classes"] = list(entry.involved_classes)
        try:
            return multi_turn_checker.multi_turn_checker(
                decoded, [list(t) for t in entry.ground_truth], test_entry, entry.category, model
            )
        finally:
            space = vars(multi_turn_utils)
            for key in [k for k in space if k.startswith(model + "_")]:
                del space[key]

    yield check
    assert not [k for k in vars(multi_turn_utils) if k.startswith("toolgym")]  # no instance left behind


def _call_text(name: str, arguments: dict) -> str:
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"


def _perturbations(entry) -> dict[str, list[list[tuple[str, dict]]]]:
    """Gold, plays that each break one turn (a call dropped, a string argument changed, no call at all), gold with
    failing calls added, and, in a turn without gold calls, the next turn's calls made early."""
    gold = gold_turns(entry)
    out = {"gold": gold}
    for t, calls in enumerate(gold):
        if len(calls) > 1:
            turns = copy.deepcopy(gold)
            del turns[t][-1]
            out[f"drop_last@{t}"] = turns
        for j, (_, args) in enumerate(calls):
            key = next((k for k, v in args.items() if isinstance(v, str)), None)
            if key is not None:
                turns = copy.deepcopy(gold)
                turns[t][j][1][key] += "_x"
                out[f"wrong_arg@{t}"] = turns
                break
        if not calls and t + 1 < len(gold):  # a turn BFCL does not check: the next turn's calls made here too
            turns = copy.deepcopy(gold)
            turns[t] = copy.deepcopy(gold[t + 1])
            out[f"early@{t}"] = turns
    first = next(t for t, calls in enumerate(gold) if calls)
    noisy = copy.deepcopy(gold)  # failing calls leave the state alone; their error texts only join the results
    name, args = noisy[first][0]
    noisy[first][:0] = [("no_such_method", {}), (name, {**args, "zzz": 1})]
    out[f"noise@{first}"] = noisy
    last = len(gold) - 1
    out[f"silent@{last}"] = [*copy.deepcopy(gold[:last]), []]
    return out


@pytest.mark.parametrize("stride", [8, pytest.param(1, marks=pytest.mark.slow)], ids=["every_8th", "all"])
@pytest.mark.parametrize("category", CATEGORIES)
def test_verdicts_agree_with_bfcls_checker(envs, bfcl_checker, category, stride):
    env = envs[category]
    entries = load_entries(category)
    seen, disagreements, outcomes = set(), [], Counter()
    for i in range(0, len(entries), stride):
        entry = entries[i]
        for kind, turns in _perturbations(entry).items():
            ours = play(env, i, turns)
            theirs = bfcl_checker(entry, turns)
            mine = first_failure(ours)
            expected = None if theirs["valid"] else BFCL_REASONS.get(theirs["error_type"], theirs["error_type"])
            outcomes[expected or "passed"] += 1
            if (mine and mine[1]) != expected:
                key = (entry.id, kind.split("@")[0])
                seen.add(key)
                if key not in KNOWN_DISAGREEMENTS:
                    disagreements.append((entry.id, kind, mine, theirs.get("error_type"), theirs.get("error_message")))
    assert not disagreements, disagreements
    assert set(outcomes) == {"passed", "empty_turn", "state", "response"}, outcomes  # every verdict is exercised
    stale = {k for k in KNOWN_DISAGREEMENTS if k[0].startswith(category + "_")} - seen
    assert not stale, f"listed disagreements that no longer occur: {sorted(stale)}"
