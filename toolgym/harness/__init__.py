"""Evaluating any OpenAI-compatible chat model (or a built-in agent) on toolgym envs.

``run_eval`` plays ``episodes`` seeds of every env id, ``concurrency`` episodes at a time on one asyncio loop
(each running episode owns an env from a small pool; env steps are local and fast), and writes to ``out``:

* ``episodes.jsonl``: one JSON line per finished episode, appended and flushed as it finishes;
* ``summary.json``: Solve-P / Solve-R / Solve-F1 (×100, episode-averaged) per env and scenario kind;
* ``summary.png``: the same as a bar chart;
* ``config.json``: the settings that define the results (a rerun with other settings is refused).

Rerunning the same command resumes: finished ``(env_id, seed)`` episodes are read back and skipped, a truncated
last line (a killed run) is dropped, nothing is written twice. An episode whose requests still fail after the
retries (connection errors, timeouts, 5xx, 429, with exponential backoff honouring ``Retry-After``) is *not*
written, so the next run redoes it; once several episodes in a row fail this way, no new episode is started (the
server is presumably down) and the summary reports how many are missing.

A τ-bench-format env's user (``env_kwargs={"user": {"kind": "model", "model": M}}``, ``toolgym eval
--user-model M``) talks through the run's client, the agent's own when ``user_base_url`` is its server: its
requests get the same retries, and one that keeps failing leaves the episode for a rerun as the agent's do.

With ``backend="ray"`` the same episodes run on Ray worker actors (:mod:`toolgym.distributed`; each owns an env
pool and, for a model, its own client to the server); the driver records each episode as it arrives, so
``episodes.jsonl``, resuming and the summary are the same as with the local backend. Both backends play an
episode with :func:`play_one`. The driver's ``ray.wait`` loop blocks the event loop ``arun_eval`` runs on.

Two ways to talk to the model:

* ``mode="native"``: ``tools=`` is sent and ``message.tool_calls`` is the action (the env takes the message dict);
* ``mode="text"``: the tools are listed in the system prompt (Qwen/Hermes style) and the completion text is the
  action; with ``json_schema=True`` the server is asked for schema-constrained JSON
  (``{"tool_calls": [{"name", "arguments"}, ...]}`` or ``{"answer": "..."}``), converted into an action.

Modules, one job each: :mod:`~toolgym.harness.config` (``EvalConfig``), :mod:`~toolgym.harness.policies` (the
model or agent that acts), :mod:`~toolgym.harness.episode` (one episode: ``play_one``),
:mod:`~toolgym.harness.runner` (resume, the local backend, ``run_eval``), :mod:`~toolgym.harness.ray_runner`
(the Ray backend) and :mod:`~toolgym.harness.summary` (summary, table, chart). Requests and their retries are
:mod:`toolgym.model_client`'s; the prompts of the three ways of asking are :mod:`toolgym.prompts`'s.

The ``openai`` client, ``tqdm`` and ``matplotlib`` are imported only when needed (``pip install toolgym[eval]``).
"""

from toolgym.harness.config import BACKENDS, EPISODES_FILE, MODES, RESPONSE_FORMATS, RESULT_KEYS, EvalConfig
from toolgym.harness.episode import EnvPool, play_one
from toolgym.harness.policies import AgentPolicy, EpisodeFailed, ModelPolicy, Turn, make_policy
from toolgym.harness.runner import arun_eval, read_episodes, run_eval
from toolgym.harness.summary import build_summary, format_summary, write_chart
from toolgym.model_client import BadRequest, RunAborted
from toolgym.prompts import action_schema, json_to_action

__all__ = [
    "BACKENDS",
    "EPISODES_FILE",
    "MODES",
    "RESPONSE_FORMATS",
    "RESULT_KEYS",
    "AgentPolicy",
    "BadRequest",
    "EnvPool",
    "EpisodeFailed",
    "EvalConfig",
    "ModelPolicy",
    "RunAborted",
    "Turn",
    "action_schema",
    "arun_eval",
    "build_summary",
    "format_summary",
    "json_to_action",
    "make_policy",
    "play_one",
    "read_episodes",
    "run_eval",
    "write_chart",
]
