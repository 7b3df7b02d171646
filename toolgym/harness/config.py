"""The settings of an evaluation run, and which of them define its results (a rerun must match those)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolgym.registry import env_options

MODES = ("native", "text")
RESPONSE_FORMATS = ("json_object", "json_schema")
BACKENDS = ("local", "ray")
EPISODES_FILE = "episodes.jsonl"
# Settings that change what an episode's result means: a rerun into the same directory must match them.
RESULT_KEYS = (
    "env_ids",
    "model",
    "agent",
    "mode",
    "json_schema",
    "response_format",
    "seed",
    "temperature",
    "max_tokens",
    "env_kwargs",
    "max_turns",
)


@dataclass
class EvalConfig:
    """Everything ``run_eval`` needs; see the module docstring and ``toolgym eval --help``."""

    env_ids: list[str]
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    agent: str | None = None
    episodes: int = 40
    concurrency: int = 8
    mode: str = "native"
    json_schema: bool = False
    response_format: str = "json_object"
    seed: int = 0
    timeout: float = 120.0
    retries: int = 4
    backoff: float = 1.0
    temperature: float = 0.0
    max_tokens: int = 1024
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    max_turns: int | None = None
    out: str | None = None
    progress: bool = True
    max_consecutive_failures: int | None = None
    backend: str = "local"  # "ray": episodes on Ray workers (toolgym.distributed)
    ray_address: str | None = None  # a Ray cluster (default: RAY_ADDRESS, else a local Ray instance)
    num_workers: int | None = None  # Ray worker actors (default: the cluster's CPUs)
    # The server of a model-played user (env_kwargs {"user": {"kind": "model", "model": ...}}); default: the
    # agent's server, through the agent's very client. Not result-defining, as base_url is not.
    user_base_url: str | None = None
    user_api_key: str | None = None

    def __post_init__(self) -> None:
        self.env_ids = list(self.env_ids)
        self.model = self.model or (os.environ.get("TOOLGYM_MODEL") if self.agent is None else None)
        if self.model is None and self.agent is None:
            raise ValueError("give a model (model= / --model / TOOLGYM_MODEL) or a built-in agent (gold, random)")
        if self.model is not None and self.agent is not None:
            raise ValueError("give either a model or a built-in agent, not both")
        if self.model is not None:
            self.base_url = self.base_url or os.environ.get("OPENAI_BASE_URL")
            if not self.base_url:
                raise ValueError("give the server's base URL (base_url= / --base-url / OPENAI_BASE_URL)")
            self.api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.json_schema and self.mode != "text":
            raise ValueError("json_schema needs mode='text' (native mode reads message.tool_calls)")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {self.backend!r}")
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        if self.response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}")
        if self.episodes < 1 or self.concurrency < 1 or self.retries < 0 or self.timeout <= 0:
            raise ValueError("episodes and concurrency must be >= 1, retries >= 0, timeout > 0")
        taken: set[str] = set()
        for env_id in self.env_ids:
            taken |= env_options(env_id)  # a clear error for an unknown id, before anything runs
        unknown = sorted(set(self.env_kwargs) - taken)
        if unknown:
            raise ValueError(f"no env of {self.env_ids} takes the env kwargs {unknown}")
        if self.user_model is not None:
            self.user_base_url = (
                self.user_base_url
                or os.environ.get("TOOLGYM_USER_BASE_URL")
                or self.base_url
                or os.environ.get("OPENAI_BASE_URL")
            )
            if not self.user_base_url:
                raise ValueError("give the user model's server (user_base_url= / --user-base-url)")
            self.user_api_key = self.user_api_key or os.environ.get("TOOLGYM_USER_API_KEY") or self.api_key or "EMPTY"

    @property
    def user_model(self) -> str | None:
        """The model that plays the user, when the env kwargs ask for one (``{"kind": "model", "model": M}``)."""
        user = self.env_kwargs.get("user")
        return user.get("model") if isinstance(user, dict) and user.get("kind") == "model" else None

    def result_config(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in RESULT_KEYS}

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        key = json.dumps(self.result_config(), sort_keys=True, default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        envs = "+".join(e.split("/")[-1] for e in self.env_ids)
        who = (self.model or self.agent or "model").rstrip("/").split("/")[-1]
        tag = self.mode + ("-json" if self.json_schema else "") if self.model else "agent"
        return Path("runs") / _safe(f"{envs}_{who}_{tag}_{digest}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "-", name)[:150]
