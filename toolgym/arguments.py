"""Checking call arguments against a tool's JSON schema, fast enough for every step.

Validators are compiled once per distinct schema (jsonschema-rs: ~0.4 µs per valid call); the error is
classified (missing, extra, wrong type, other) only on the failure path, so each kind of mistake gets its
own feedback text and reward component.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema_rs

ERROR_KINDS = ("missing_args", "extra_args", "wrong_types", "schema_violation")


@lru_cache(maxsize=4096)
def _validator(schema_json: str) -> Any:
    return jsonschema_rs.validator_for(json.loads(schema_json))


_BY_ID: dict[int, tuple[dict[str, Any], Any]] = {}


def parameters_validator(parameters: dict[str, Any]) -> Any:
    """A compiled validator for a function's ``parameters`` schema (cached across envs).

    Generators reuse their schema objects across scenarios, so an identity hit skips serialising the schema.
    """
    hit = _BY_ID.get(id(parameters))
    if hit is not None and hit[0] is parameters:
        return hit[1]
    validator = _validator(json.dumps(parameters or {"type": "object"}, sort_keys=True))
    if len(_BY_ID) > 8192:
        _BY_ID.clear()
    _BY_ID[id(parameters)] = (parameters, validator)
    return validator


def check_arguments(validator: Any, arguments: dict[str, Any]) -> tuple[str, str] | None:
    """``None`` when valid, else ``(kind, message)`` with kind one of :data:`ERROR_KINDS`."""
    if validator.is_valid(arguments):
        return None
    kinds: list[str] = []
    messages: list[str] = []
    for err in validator.iter_errors(arguments):
        last = err.schema_path[-1] if err.schema_path else ""
        if last == "required":
            kinds.append("missing_args")
        elif last == "additionalProperties":
            kinds.append("extra_args")
        elif last == "type":
            kinds.append("wrong_types")
        else:
            kinds.append("schema_violation")
        where = "/".join(str(p) for p in err.instance_path)
        messages.append(f"{where}: {err.message}" if where else err.message)
    kind = next((k for k in ERROR_KINDS if k in kinds), "schema_violation")
    return kind, "; ".join(messages[:5])
