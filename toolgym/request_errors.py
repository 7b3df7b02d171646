"""How a failed request to an OpenAI-compatible server is handled: retried, reported, or fatal to the run.

Shared by the evaluation harness and the model-driven build, so both treat the same server fault the same way.
"""

from __future__ import annotations

import asyncio


def classify(exc: BaseException) -> str:
    """``"retry"`` (connection, timeout, 408/409/429/5xx, unreadable reply), ``"fatal"`` (401/403/404, unknown)
    or ``"bad_request"`` (any other 4xx: the request itself is refused)."""
    import openai  # lazy: only a run that talks to a model needs it

    if isinstance(exc, (asyncio.TimeoutError, openai.APIConnectionError, openai.APIResponseValidationError)):
        return "retry"  # APITimeoutError is a connection error
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        if code in (408, 409, 429) or code >= 500:
            return "retry"
        if code in (401, 403, 404):
            return "fatal"
        return "bad_request"
    return "fatal"
