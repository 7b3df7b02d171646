"""The toolgym command: eval prints the per-kind table, list and show describe envs."""

import json
import subprocess
import sys
from pathlib import Path


def run(*args):
    return subprocess.run([sys.executable, "-m", "toolgym.cli", *args], capture_output=True, text=True, check=True)


def test_eval_prints_solve_metrics_per_kind(tmp_path):
    out = tmp_path / "summary.json"
    res = run("eval", "ToolGym/FlightBooking-v0", "--episodes", "12", "--json", str(out))
    assert "agent=gold" in res.stdout and "agent=random" in res.stdout
    assert "Solve-F1" in res.stdout and "multi_hop" in res.stdout
    report = json.loads(out.read_text())
    gold = next(r for r in report if r["agent"] == "gold")
    assert gold["rows"][-1]["kind"] == "all" and gold["rows"][-1]["solve_f1"] == 100.0


def test_list_and_show():
    listing = run("list").stdout
    assert "ToolGym/FlightBooking-v0" in listing and "ToolGym/FTRLSample-v0" in listing
    shown = run("show", "ToolGym/FlightBooking-v0", "--seed", "4", "--kind", "multi_hop").stdout
    assert "gold plan:" in shown and "turn 2:" in shown and "final answer" in shown


def test_user_errors_are_one_line_with_exit_code_2():
    for args, want in (
        (["eval", "ToolGym/FlightBookin-v0"], "did you mean ToolGym/FlightBooking-v0?"),
        (["eval", "ToolGym/FlightBooking-v0", "--episodes", "2", "--hops", "9"], "hops must be an integer"),
        (["show", "ToolGym/Nope-v0"], "not a registered toolgym env"),
        # argparse's own errors: one line too, with the closest command, option or choice
        (["evl", "ToolGym/FlightBooking-v0"], "(did you mean eval?)"),
        (
            ["eval", "ToolGym/FlightBooking-v0", "--hopz", "2"],
            "unrecognized arguments: --hopz 2 (did you mean --hops?)",
        ),
        (["show", "ToolGym/FlightBooking-v0", "--sed=3"], "(did you mean --seed?)"),
        (["export", "ToolGym/FlightBooking-v0", "--format", "sfft"], "(did you mean sft?)"),
        (["eval", "ToolGym/FlightBooking-v0", "--zzzzzz"], "unrecognized arguments: --zzzzzz"),
    ):
        res = subprocess.run([sys.executable, "-m", "toolgym.cli", *args], capture_output=True, text=True)
        assert res.returncode == 2 and want in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_a_closed_pipe_ends_quietly():
    cmd = f"{sys.executable} -m toolgym.cli eval ToolGym/FlightBooking-v0 --episodes 40 | head -1"
    res = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True)
    assert "BrokenPipeError" not in res.stderr and "Traceback" not in res.stderr


def test_eval_suites_print_their_own_score_beside_solve_metrics(tmp_path):
    out = tmp_path / "report.json"
    res = run("eval", "--suite", "bfcl", "--agent", "gold", "--episodes", "3", "--json", str(out))
    report = json.loads(out.read_text())
    assert len(report) == 15 and all(r["env_id"].startswith("ToolGym/BFCL-") for r in report)
    acc = {r["env_id"]: r["rows"][-1]["bfcl_multi_turn" if "multi_turn" in r["env_id"] else "bfcl_ast"] for r in report}
    assert "BFCL-MT" in res.stdout and acc["ToolGym/BFCL-multi_turn_base-v0"] == 100.0
    # live_relevance has no gold calls (any call passes): the gold agent, having none to make, answers and fails
    assert "BFCL-acc" in res.stdout and acc.pop("ToolGym/BFCL-live_relevance-v0") == 0.0
    assert set(acc.values()) == {100.0}
    records = tmp_path / "mine.jsonl"
    records.write_text(_sample_ftrl_records())
    res = run("eval", "--suite", f"ftrl:{records}", "--agent", "random", "--episodes", "4")
    assert "ToolGym/FTRL-mine-v0  agent=random" in res.stdout and "BFCL-acc" not in res.stdout
    retail = Path(__file__).parent / "data" / "taubench_retail"
    out = tmp_path / "tau.json"
    res = run("eval", "--suite", f"taubench:{retail}", "--agent", "gold", "--episodes", "3", "--json", str(out))
    assert "Pass^1" in res.stdout and json.loads(out.read_text())[0]["rows"][-1]["pass"] == 100.0
    for spec, want in (("nope", "unknown suite 'nope'"), (f"ftrl:{tmp_path / 'none'}", "no such file")):
        bad = subprocess.run(
            [sys.executable, "-m", "toolgym.cli", "eval", "--suite", spec], capture_output=True, text=True
        )
        assert bad.returncode == 2 and want in bad.stderr


def _sample_ftrl_records() -> str:
    import toolgym

    return (toolgym.packs.packs_dir() / "ftrl_sample" / "records.jsonl").read_text()
