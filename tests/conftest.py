"""Shared fixtures. ``llm_server``: a real local LLM (see tests/llm_server.py) for the tests that need one."""

import pytest
from llm_server import SETUP_HINT, LlamaServer, LLMUnavailable, missing_llm_packages


@pytest.fixture(scope="session")
def llm_server():
    """SmolLM2-135M-Instruct behind llama-cpp-python's OpenAI-compatible server on 127.0.0.1 (session-wide).

    Fails (never skips) when the model or the server is not installed."""
    missing = missing_llm_packages()
    if missing:
        pytest.fail(f"the local test LLM is not installed (missing modules {missing}): {SETUP_HINT}", pytrace=False)
    server = LlamaServer()
    try:
        server.start()
    except LLMUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
