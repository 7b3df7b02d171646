"""``--backend ray`` on a local Ray instance: same results as the local backend, resume, lost workers.

One local Ray instance (2 CPUs, no dashboard) serves the whole module; starting it takes ~10 s, hence ``slow``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import ray
from ray import cloudpickle

from toolgym import distributed
from toolgym.cli import main
from toolgym.evaluate import evaluate
from toolgym.export import export, read_rows
from toolgym.harness import read_episodes, run_eval

pytestmark = pytest.mark.slow

ENVS = ["ToolGym/FlightBooking-v0", "ToolGym/HotelBooking-v1"]

# the helpers below run inside Ray workers, which cannot import this test module: ship them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def episodes(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]


def comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "seconds"}


@pytest.mark.parametrize("agent", ["gold", "random"])
def test_eval_agents_same_episodes_as_local(tmp_path, agent):
    kw = {"agent": agent, "episodes": 6, "seed": 3, "progress": False}
    s_local = run_eval(ENVS, out=str(tmp_path / "local"), **kw)
    s_ray = run_eval(ENVS, out=str(tmp_path / "ray"), backend="ray", num_workers=2, **kw)
    local = read_episodes(tmp_path / "local" / "episodes.jsonl")
    remote = read_episodes(tmp_path / "ray" / "episodes.jsonl")
    assert local.keys() == remote.keys() and len(remote) == 12
    assert {k: comparable(v) for k, v in local.items()} == {k: comparable(v) for k, v in remote.items()}
    assert s_ray["complete"] and s_ray["envs"] == s_local["envs"] and s_ray["run"]["backend"] == "ray"
    # and the same metrics as the in-process evaluator (toolgym eval without --backend)
    for r in evaluate(ENVS[0], agent, 6, seed=3):
        got = remote[(ENVS[0], r["seed"])]
        assert (got["solve_p"], got["solve_r"], got["solve_f1"], got["rewards"]) == (
            r["solve_p"],
            r["solve_r"],
            r["solve_f1"],
            r["rewards"],
        )


def test_eval_resume_across_backends_without_duplicates(tmp_path):
    out = tmp_path / "run"
    kw = {"agent": "random", "seed": 0, "out": str(out), "progress": False}
    assert run_eval(ENVS[0], episodes=4, backend="ray", **kw)["run"]["written_this_run"] == 4
    with open(out / "episodes.jsonl", "a") as f:
        f.write('{"env_id": "ToolGym/FlightBooking-v0", "seed": 4, "sol')  # a run killed mid-write
    s = run_eval(ENVS[0], episodes=8, backend="ray", **kw)
    assert s["run"]["written_this_run"] == 4 and s["complete"]
    keys = [(r["env_id"], r["seed"]) for r in episodes(out)]
    assert len(keys) == len(set(keys)) == 8 and {k[1] for k in keys} == set(range(8))
    assert run_eval(ENVS[0], episodes=8, backend="ray", **kw)["run"]["written_this_run"] == 0
    s = run_eval(ENVS[0], episodes=10, **kw)  # the local backend continues the same run
    assert s["run"]["written_this_run"] == 2 and len(episodes(out)) == 10


def test_model_eval_on_ray_workers(tmp_path):
    pytest.importorskip("openai")
    from test_harness import FakeServer, gold_plans

    server = FakeServer(gold_plans(ENVS[0], range(100, 108)))
    try:
        out = tmp_path / "model"
        summary = run_eval(
            ENVS[0],
            model="fake",
            base_url=server.base_url,
            episodes=8,
            seed=100,
            concurrency=4,
            out=str(out),
            progress=False,
            backend="ray",
            num_workers=2,
        )
    finally:
        server.stop()
    recs = episodes(out)
    assert summary["complete"] and len({r["seed"] for r in recs}) == len(recs) == 8
    assert summary["envs"][ENVS[0]]["rows"][-1]["solve_f1"] == 100.0 and server.problems == []
    # every worker talked to the server itself; their request counters add up on the driver
    assert summary["run"]["requests"] == server.requests == sum(r["turns"] for r in recs)


def test_model_eval_on_ray_stops_when_the_server_is_down(tmp_path):
    pytest.importorskip("openai")
    from test_harness import FakeServer, gold_plans

    server = FakeServer(gold_plans(ENVS[0], range(100, 101)), fail_after=0)  # every request: HTTP 500
    kw = {"model": "fake", "base_url": server.base_url, "episodes": 40, "seed": 100, "concurrency": 2}
    try:
        summary = run_eval(
            ENVS[0], out=str(tmp_path / "m"), progress=False, backend="ray", retries=0, backoff=0.01, **kw
        )
    finally:
        server.stop()
    # failed episodes are not written and not retried by Ray; after 3 in a row no new episode starts
    assert not summary["complete"] and summary["run"]["aborted"] and summary["episodes_done"] == 0
    assert 3 <= summary["run"]["failed_this_run"] < 40 and server.requests == summary["run"]["failed_this_run"]


def _rows_as_set(path: Path) -> set[str]:
    out = set()
    for row in read_rows(path):
        if "extra_info" in row:  # the row's position in the file, which follows the writing order
            row["extra_info"] = {k: v for k, v in row["extra_info"].items() if k != "index"}
        out.add(json.dumps(row, sort_keys=True))
    return out


@pytest.mark.parametrize("fmt", ["sft", "rl"])
def test_export_on_ray_equals_local(tmp_path, fmt):
    env = ENVS[1]
    local = export(env, fmt, 8, tmp_path / "local", seed=5, parquet=False, kind="multi_hop")
    first = export(env, fmt, 3, tmp_path / "ray", seed=5, parquet=False, kind="multi_hop", backend="ray")
    path = first.path
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # an interrupted run: a truncated last line
    remote = export(env, fmt, 8, tmp_path / "ray", seed=5, parquet=False, kind="multi_hop", backend="ray")
    assert remote.rows_total == local.rows_total == len(read_rows(path))
    assert _rows_as_set(path) == _rows_as_set(local.path)
    rows = read_rows(path)
    assert len({(r["seed"], r.get("turn")) for r in rows}) == len(rows)  # no duplicates
    if fmt == "rl":
        assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows)))
    again = export(env, fmt, 8, tmp_path / "ray", seed=5, parquet=False, kind="multi_hop", backend="ray")
    assert again.rows_written == 0


def test_ids_registered_at_run_time_reach_the_workers(tmp_path, capsys):
    """A worker process knows only the ids ``import toolgym`` registers: an ``ftrl:PATH`` file and a pack folder
    registered in the driver reach the workers through the registry's runtime registrations, replayed there."""
    import toolgym
    from toolgym.registry import register_pack, runtime_registrations

    records = tmp_path / "runtime_records.jsonl"
    records.write_text((toolgym.packs.packs_dir() / "ftrl_sample" / "records.jsonl").read_text())
    out = tmp_path / "eval"
    args = ["eval", "--suite", f"ftrl:{records}", "--agent", "random", "--episodes", "3", "--out", str(out)]
    assert main([*args, "--backend", "ray", "--num-workers", "2", "--no-progress"]) == 0
    recs = episodes(out / "random")
    assert {r["env_id"] for r in recs} == {"ToolGym/FTRL-runtime-records-v0"} and len(recs) == 3
    # a procedural pack folder registered with register_pack, exported on the workers as it is locally
    pack = tmp_path / "pack"
    pack.mkdir()
    manifest = json.loads((toolgym.packs.packs_dir() / "hotel_booking" / "manifest.json").read_text())
    (pack / "manifest.json").write_text(json.dumps({**manifest, "name": "RuntimeHotels", "version": 3}))
    env = register_pack(pack)
    assert env == "ToolGym/RuntimeHotels-v3" and any(m["name"] == "RuntimeHotels" for m in runtime_registrations())
    local = export(env, "sft", 3, tmp_path / "local", parquet=False)
    remote = export(env, "sft", 3, tmp_path / "ray", parquet=False, backend="ray", num_workers=2)
    assert remote.rows_written == 3 and _rows_as_set(remote.path) == _rows_as_set(local.path)


# -- lost workers and failing items ---------------------------------------------------------------------------------


def _fails_once(marks: str, _state, item: int) -> int:
    mark = Path(marks) / f"raised-{item}"
    if not mark.exists():
        mark.touch()
        raise RuntimeError(f"transient failure on item {item}")
    return item * item


def _dies_once(marks: str, _state, item: int) -> tuple[int, int]:
    mark = Path(marks) / "died"
    if item == 3 and not mark.exists():
        mark.touch()
        os._exit(1)  # the worker process dies with this item (and anything else in flight on it)
    return item, os.getpid()


def _dies_once_pid(_state, item: int) -> tuple[int, int]:
    import time

    time.sleep(0.05)  # long enough for both workers to take items
    return item, os.getpid()


def _always_fails(_state, item: int) -> int:
    raise ValueError(f"bad item {item}")


def test_failed_items_are_retried(tmp_path):
    retried = []
    got = dict(
        distributed.map_unordered(
            lambda s, i: _fails_once(str(tmp_path), s, i),
            range(6),
            num_workers=2,
            on_retry=lambda item, exc, n: retried.append((item, n)),
        )
    )
    assert got == {i: i * i for i in range(6)}
    assert sorted(retried) == [(i, 1) for i in range(6)]


def test_a_killed_worker_is_replaced_and_its_items_rerun(tmp_path):
    import functools

    errors = []
    results = distributed.map_unordered(
        functools.partial(_dies_once, str(tmp_path)),
        range(8),
        num_workers=2,
        on_retry=lambda item, exc, n: errors.append(exc),
    )
    got = dict(results)
    assert sorted(got) == list(range(8)) and (tmp_path / "died").exists()
    assert errors and all(isinstance(e, ray.exceptions.RayActorError) for e in errors)
    # the pool replaced the dead actor: the next call runs on two live workers
    pids = {pid for _, (_, pid) in distributed.map_unordered(_dies_once_pid, range(8), num_workers=2, per_worker=1)}
    assert len(pids) == 2


def test_an_item_failing_every_time_stops_the_run():
    with pytest.raises(distributed.DistributedError, match="bad item"):
        list(distributed.map_unordered(_always_fails, range(3), num_workers=1, retries=1))


def test_cli_backend_ray(tmp_path, capsys):
    env = ENVS[0]
    out = tmp_path / "eval"
    args = ["eval", env, "--agent", "gold", "--episodes", "3", "--backend", "ray", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert sorted(r["seed"] for r in episodes(out / "gold")) == [0, 1, 2]
    assert main([*args[:4], "--episodes", "5", *args[6:]]) == 0
    assert sorted(r["seed"] for r in episodes(out / "gold")) == [0, 1, 2, 3, 4]
    exp = ["export", env, "--format", "sft", "--episodes", "4", "--out", str(tmp_path / "x"), "--no-parquet"]
    assert main([*exp, "--backend", "ray", "--num-workers", "2"]) == 0
    assert "4 rows written" in capsys.readouterr().out


def test_ray_is_imported_only_when_used():
    import subprocess

    code = "import sys, toolgym, toolgym.cli, toolgym.harness, toolgym.export; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_build_check_on_ray_same_counts_as_local(tmp_path, capsys):
    from toolgym.construct.cli import check_domain, check_domains_ray
    from toolgym.construct.pipeline import find_domains

    refs = {k: v for k, v in find_domains().items() if k in ("hotel_booking", "library")}
    assert len(refs) == 2
    remote = check_domains_ray(refs, 3, seed=1)

    def counts(report):
        kinds = {k: {x: y for x, y in v.items() if x != "per_second"} for k, v in report["kinds"].items()}
        return report["domain"], report["max_hops"], kinds

    for name, ref in refs.items():
        assert counts(remote[name]) == counts(check_domain(ref, 3, seed=1))
    args = ["build", "--domain", "hotel_booking", "--check", "2", "--out", str(tmp_path), "--backend", "ray"]
    assert main(args) == 0
    assert (tmp_path / "hotel_booking" / "manifest.json").is_file() and "validate_domain ok" in capsys.readouterr().out
