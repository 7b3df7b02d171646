"""The five stages of one scenario, each a model request whose reply must pass the stage's checks.

A rejected reply is asked again with the problem (``attempts`` per stage), then the scenario is discarded with the
reason ``"<stage>:<kind>"`` (:class:`Discard`). Stage outputs already journaled are not asked again. Requests go
through :class:`~toolgym.model_client.ChatClient` (the retries of connection errors, timeouts, 429 and 5xx);
requests that keep failing leave the scenario unfinished (:class:`ScenarioFailed`).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from toolgym.construct.llm import prompts as P
from toolgym.construct.llm.assemble import assemble, plan_for
from toolgym.construct.llm.code_check import CheckResult, check_scenario
from toolgym.construct.llm.config import LLMBuildConfig
from toolgym.construct.llm.journal import Journal
from toolgym.construct.llm.validate import (
    Reject,
    check_code_reply,
    identity_integration,
    parse_reply,
    validate_decomposition,
    validate_documents,
    validate_integration,
    validate_scaling,
)
from toolgym.model_client import BadRequest, ChatClient, RetriesExhausted, decoding_schema, reply_message

STAGES = ("decompose", "document", "integrate", "scale", "deploy")


class Discard(Exception):
    """A stage kept failing validation: the scenario is discarded with ``reason`` = ``"<stage>:<kind>"``."""

    def __init__(self, stage: str, kind: str, detail: str, rejected: list[dict[str, Any]]):
        super().__init__(f"{stage}:{kind}: {detail}")
        self.stage, self.kind, self.detail, self.rejected = stage, kind, detail, rejected


class ScenarioFailed(Exception):
    """Requests kept failing after the retries (server down, timeouts): the scenario stays unfinished."""


class Model:
    """The build's model: one client, ``concurrency`` requests at a time, a JSON reply per stage request."""

    def __init__(self, cfg: LLMBuildConfig):
        self.cfg = cfg
        self.client = ChatClient(
            cfg.base_url,
            cfg.api_key,
            timeout=cfg.timeout,
            retries=cfg.retries,
            backoff=cfg.backoff,
            seed=cfg.seed,
            concurrency=cfg.concurrency,
        )
        self.stats = self.client.stats

    async def close(self) -> None:
        await self.client.close()

    async def complete(self, messages: list[dict[str, Any]], schema: dict[str, Any], seed: int) -> str:
        """The reply text; :class:`Reject` when the server refuses the request, :class:`ScenarioFailed` when the
        requests keep failing (a :class:`~toolgym.model_client.RunAborted` stops the build)."""
        cfg = self.cfg
        req: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
            "seed": seed,
        }
        wire = decoding_schema(schema)
        if cfg.response_format == "json_object":
            req["response_format"] = {"type": "json_object", "schema": wire}
        elif cfg.response_format == "json_schema":
            req["response_format"] = {"type": "json_schema", "json_schema": {"name": "reply", "schema": wire}}
        try:
            resp = await self.client.complete(req)
        except BadRequest as exc:
            raise Reject("bad_request", str(exc)) from exc
        except RetriesExhausted as exc:
            raise ScenarioFailed(str(exc)) from exc
        try:
            return reply_message(resp)["content"]
        except BadRequest as exc:
            raise Reject("invalid_json", str(exc)) from exc


def _seed(cfg: LLMBuildConfig, index: int, stage: str, attempt: int) -> int:
    key = f"{cfg.seed}/{index}/{stage}/{attempt}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") >> 1


class ScenarioBuild:
    """The five stages of scenario ``index``, continuing from the stage outputs already journaled."""

    def __init__(self, cfg: LLMBuildConfig, model: Model, journal: Journal, index: int):
        self.cfg, self.model, self.journal, self.index = cfg, model, journal, index
        self.plan = plan_for(cfg, index)
        journaled = journal.stages.get(index, {})
        self.done = {stage: rec["output"] for stage, rec in journaled.items()}
        # every rejected reply of this scenario, including those of stages journaled by an earlier run
        self.rejected: list[dict[str, Any]] = [r for rec in journaled.values() for r in rec.get("rejected", [])]
        self._mark = len(self.rejected)

    async def ask(self, stage: str, messages: list[dict], schema: dict, validate: Any, tag: str = "") -> Any:
        msgs = messages
        rejected: list[dict[str, Any]] = []
        for attempt in range(self.cfg.attempts):
            reply = ""
            try:
                reply = await self.model.complete(msgs, schema, _seed(self.cfg, self.index, stage + tag, attempt))
                result = validate(parse_reply(reply, schema))
            except Reject as r:
                rejected.append({"stage": stage, "attempt": attempt, "kind": r.kind, "detail": r.detail[:500]})
                if r.kind == "bad_request":
                    break
                msgs = P.feedback_messages(messages, reply, f"{r.kind}: {r.detail}")
                continue
            self.rejected.extend(rejected)
            return result
        self.rejected.extend(rejected)
        last = rejected[-1]
        raise Discard(stage, last["kind"], last["detail"], rejected)

    def _record(self, stage: str, output: Any) -> None:
        self.done[stage] = output
        rejected = self.rejected[self._mark :]
        self._mark = len(self.rejected)
        self.journal.append(
            {"event": "stage", "index": self.index, "stage": stage, "output": output, "rejected": rejected}
        )

    async def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        base = {"index": self.index, "kind": self.plan["kind"], "topic": self.plan["topic"]}
        try:
            scenario = await self._stages()
        except Discard as d:
            return {
                "event": "discarded",
                **base,
                "stage": d.stage,
                "reason": f"{d.stage}:{d.kind}",
                "detail": d.detail,
                "rejected": self.rejected,
                "seconds": round(time.monotonic() - t0, 2),
            }
        return {
            "event": "accepted",
            **base,
            "scenario": scenario,
            "rejected": self.rejected,
            "seconds": round(time.monotonic() - t0, 2),
        }

    async def _stages(self) -> dict[str, Any]:
        kind, plan = self.plan["kind"], self.plan
        if "decompose" not in self.done:
            out = await self.ask(
                "decompose",
                P.decompose_messages(plan["topic"], kind),
                P.decompose_schema(kind),
                lambda d: validate_decomposition(d, kind),
            )
            self._record("decompose", out)
        dec = self.done["decompose"]
        ids = [s["id"] for s in dec["subquestions"]]
        if "document" not in self.done:
            out = await self.ask(
                "document", P.documents_messages(dec), P.documents_schema(ids), lambda d: validate_documents(d, dec)
            )
            self._record("document", out)
        docs = self.done["document"]
        if "integrate" not in self.done:
            if len(docs) == 1:
                out = identity_integration(docs)
            else:
                out = await self.ask(
                    "integrate",
                    P.integrate_messages(dec, [d["function"] for d in docs]),
                    P.integrate_schema(ids),
                    lambda d: validate_integration(d, dec, docs),
                )
            self._record("integrate", out)
        integrated = self.done["integrate"]
        if "scale" not in self.done:
            names = [f["name"] for f in integrated["functions"]]
            strategies, n = plan["strategies"], plan["n_distractors"]
            out = await self.ask(
                "scale",
                P.scale_messages(integrated["functions"], strategies, n),
                P.scale_schema(strategies, names, n),
                lambda d: validate_scaling(d, integrated, strategies),
            )
            self._record("scale", out)
        return await self._deploy(dec, self.done["scale"])

    async def _deploy(self, dec: dict[str, Any], scaled: dict[str, Any]) -> dict[str, Any]:
        subs = {s["id"]: s for s in dec["subquestions"]}
        answers = [s["answer"] for s in dec["subquestions"]]
        fns = scaled["functions"] + scaled["distractors"]
        calls = {f["name"]: [] for f in fns}
        for c in scaled["calls"]:
            calls[c["function"]].append({"arguments": c["arguments"], "answer": subs[c["subquestion"]]["answer"]})
        codes: dict[str, str] = {}
        problems: dict[str, str] = {}
        result: CheckResult | None = None
        for round_ in range(self.cfg.attempts):
            todo = [f for f in fns if f["name"] not in codes or f["name"] in problems]
            for fn in todo:
                messages = P.code_messages(fn, calls[fn["name"]], answers)
                if fn["name"] in problems and fn["name"] in codes:
                    messages = P.feedback_messages(
                        messages, json.dumps({"code": codes[fn["name"]]}), problems[fn["name"]]
                    )
                name = fn["name"]
                check = lambda d, n=name: check_code_reply(d, n)  # noqa: E731
                codes[name] = await self.ask("deploy", messages, P.CODE_SCHEMA, check, tag=f"/{name}/{round_}")
            scenario = assemble(self.cfg, self.index, self.plan, dec, scaled, codes)
            result = await check_scenario(scenario, self.cfg.limits)
            if result.ok:
                return scenario
            self.rejected.append(
                {"stage": "deploy", "attempt": round_, "kind": result.kind(), "detail": result.summary()[:500]}
            )
            by_tool = {p["tool"]: f"{p['kind']}: {p['detail']}" for p in result.problems if p["tool"] != "*"}
            everyone = result.process or next((p["detail"] for p in result.problems if p["tool"] == "*"), None)
            problems = by_tool if not everyone else {f["name"]: everyone for f in fns}
        assert result is not None
        raise Discard("deploy", result.kind(), result.summary()[:500], [])
