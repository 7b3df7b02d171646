"""The settings of one ``openai`` build, and which of them define its results (a rerun must match those)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolgym.construct.llm.code_check import Limits
from toolgym.scenario import KINDS

RESPONSE_FORMATS = ("json_object", "json_schema", "none")
RESULT_KEYS = ("model", "seed", "topic", "kind", "temperature", "max_tokens", "attempts", "response_format")


@dataclass
class LLMBuildConfig:
    """Settings of one ``openai`` build (``toolgym build --backend openai``)."""

    model: str
    base_url: str
    out: str
    api_key: str | None = None
    scenarios: int = 10
    concurrency: int = 4
    seed: int = 0
    topic: str | None = None
    kind: str | None = None
    name: str | None = None
    temperature: float = 0.7
    max_tokens: int = 1024
    attempts: int = 3
    retries: int = 4
    backoff: float = 1.0
    timeout: float = 120.0
    response_format: str = "json_object"
    limits: Limits = field(default_factory=Limits)
    progress: bool = True
    max_consecutive_failures: int | None = None

    def __post_init__(self) -> None:
        self.api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}")
        if self.scenarios < 1 or self.concurrency < 1 or self.attempts < 1 or self.retries < 0:
            raise ValueError("scenarios, concurrency and attempts must be >= 1, retries >= 0")
        self.name = self.name or pack_name(Path(self.out).name)
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", self.name):
            raise ValueError(f"pack name must be CamelCase letters and digits, not {self.name!r}")

    def result_config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RESULT_KEYS}


def pack_name(folder: str) -> str:
    """``llm_weather`` -> ``LlmWeather`` (the env id is ``ToolGym/<name>-v0``)."""
    name = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", folder) if p)
    return name if name[:1].isalpha() else f"Pack{name}"
