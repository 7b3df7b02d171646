"""A verifiers harness plugin for the tests: verifiers' own ``null`` chat harness, run by this interpreter.

The ``null`` harness installs its chat program's dependencies (openai, mcp, httpx, ...) into a fresh uv
environment from the package index before every run; the tests run offline, and this interpreter already has
those packages. So this harness is ``NullHarness`` with ``prepare_uv_script`` answered by ``sys.executable``;
the program itself (verifiers' ``CHAT_PROGRAM_SOURCE``) and its launch arguments are verifiers' own.
Loaded by id (``harness=VenvChatHarnessConfig(id="venv_chat_harness")``) from the tests directory on sys.path.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from verifiers.v1.harnesses.null import NullHarness, NullHarnessConfig
from verifiers.v1.harnesses.utils.launch import CHAT_PROGRAM_SOURCE, launch_chat_program

__all__ = ["VenvChatHarness", "VenvChatHarnessConfig"]


class VenvChatHarnessConfig(NullHarnessConfig):
    id: str = "venv_chat_harness"


class _VenvRuntime:
    """The run's runtime, except that a PEP 723 script runs with this interpreter instead of a uv env."""

    def __init__(self, runtime: Any):
        self._runtime = runtime

    async def prepare_uv_script(self, script: str | bytes, env: dict[str, str] | None = None, *, activate: bool = True):
        data = script.encode() if isinstance(script, str) else script
        path = f".vf-chat-{hashlib.sha256(data).hexdigest()[:16]}.py"
        await self._runtime.write(path, data)
        return [sys.executable, path]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)


class VenvChatHarness(NullHarness):
    async def setup(self, runtime: Any) -> None:
        """Nothing to install: this interpreter has the chat program's packages."""

    async def launch(self, ctx, trace, runtime, endpoint, secret, mcp_urls, data, tool_interception_url=None):
        system_prompt, prompt = self.resolve_prompt(data)
        return await launch_chat_program(
            CHAT_PROGRAM_SOURCE,
            self.config,
            ctx,
            trace,
            _VenvRuntime(runtime),
            endpoint,
            secret,
            mcp_urls,
            system_prompt,
            prompt,
            extra_args=[f"--tool-interception-url={tool_interception_url}"] if tool_interception_url else (),
        )
