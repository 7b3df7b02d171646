"""The LLM-written real-code corpus (benchmarks/llm_code_corpus.py): each reply is judged against plain CPython.

The fast test journals hand-written replies, one per class the script can give, and checks that each lands in its
class; the slow test asks SmolLM2 (the ``llm_server`` fixture) through the construction backend's deploy-stage
request, accounts for every reply and resumes from the journal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from toolgym.model_client import decoding_schema

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "llm_code_corpus.py"

PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
HAND_WRITTEN = {  # key: (code, the class it must get)
    "lookup": ("def lookup(city):\n    data = {'Paris': '21C'}\n    return {'temp': data[city]} if city in data "
               "else {'error': 'not found'}\n", "same"),
    "typed": ("from typing import Dict\ndef typed(city: str) -> Dict[str, str]:\n    return {'t': city.upper()}\n",
              "same"),
    "raises": ("def raises(city):\n    return {'Paris': 1}[city]\n", "same"),  # KeyError on the changed input
    "shell": ("import subprocess\ndef shell(city):\n    return subprocess.__name__\n", "refused"),
    "budget": ("def budget(city):\n    n = 0\n    for i in range(300000):\n        n += i\n    return n\n", "differs"),
    "file": ("def file(city):\n    return open('x.txt', 'w').write(city)\n", "differs"),
    "dice": ("import random\ndef dice(city):\n    return random.random()\n", "nondeterministic"),
    "broken": ("def broken(city):\n    return {'a': \n", "plain_fails"),
    "spins": ("def spins(city):\n    while True:\n        pass\n", "plain_fails"),
}  # fmt: skip


def _row(key: str, reply: str) -> dict:
    fn = {"name": key, "description": "Weather of a city.", "parameters": PARAMS}
    calls = [{"arguments": {"city": "Paris"}, "answer": "21C"}]
    return {"key": key, "function": fn, "calls": calls, "forbidden": ["21C"], "model": "hand", "reply": reply}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)


def test_each_reply_gets_its_class(tmp_path):
    journal = tmp_path / "replies.jsonl"
    rows = [_row(k, json.dumps({"code": code})) for k, (code, _) in HAND_WRITTEN.items()]
    rows.append(_row("prose", "Here is the function you asked for."))
    journal.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "corpus.json"
    res = _run("--replies", str(journal), "--out", str(out), "--plain-seconds", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    got = {r["key"]: r["class"] for r in report["results"]}
    assert got == {**{k: want for k, (_, want) in HAND_WRITTEN.items()}, "prose": "no_code"}
    details = {r["key"]: r["detail"] for r in report["results"]}
    assert "subprocess" in details["shell"]  # the refusal names the construct
    assert "step budget" in details["budget"] and "NameError" in details["file"]
    assert report["judged"] == 6 and report["share_same"] == pytest.approx(3 / 6)
    assert "share same" in res.stdout


def test_an_empty_journal_is_one_clear_error(tmp_path):
    res = _run("--replies", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o.json"))
    assert res.returncode == 2 and "holds no replies" in res.stderr and "Traceback" not in res.stderr


def test_decoding_schema_leaves_out_only_long_max_lengths():
    schema = {"type": "object", "properties": {"code": {"type": "string", "maxLength": 2500},
              "name": {"type": "string", "maxLength": 60}}, "anyOf": [{"maxLength": 5000}]}  # fmt: skip
    wire = decoding_schema(schema)
    assert wire == {"type": "object", "properties": {"code": {"type": "string"},
                    "name": {"type": "string", "maxLength": 60}}, "anyOf": [{}]}  # fmt: skip
    assert schema["properties"]["code"]["maxLength"] == 2500  # the caller's schema is untouched


@pytest.mark.slow
def test_smollm2_written_tools_are_judged_and_the_journal_resumes(llm_server, tmp_path):
    """The deploy-stage schema (code up to 2,500 characters) is sent through ``decoding_schema``: sent whole, it
    made llama.cpp's grammar parser fail and its server exit."""
    journal, out = tmp_path / "replies.jsonl", tmp_path / "corpus.json"
    ask = ["--replies", str(journal), "--out", str(out), "--model", llm_server.model, "--base-url",
           llm_server.base_url, "--envs", "ToolGym/Banking-v0", "--seeds", "1", "--max-tokens", "300",
           "--attempts", "2", "--syntax-feedback"]  # fmt: skip
    first = _run(*ask, "--max-functions", "3")
    assert first.returncode == 0, first.stderr[-2000:]
    second = _run(*ask, "--max-functions", "4")  # resumes: only the fourth tool is asked for
    assert second.returncode == 0, second.stderr[-2000:]
    rows = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(rows) == 4 and len({r["key"] for r in rows}) == 4
    assert all(r["model"] == llm_server.model and not r["reply"].startswith("<refused") for r in rows)
    assert all(r["attempts"] in (1, 2) for r in rows)
    report = json.loads(out.read_text())
    assert sum(report["counts"].values()) == 4 == len(report["results"])
    assert report["judged"] == sum(report["counts"].get(c, 0) for c in ("same", "refused", "differs"))
