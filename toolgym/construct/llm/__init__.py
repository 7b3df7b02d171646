"""The ``openai`` backend of the build pipeline: FTRL's five stages driven by any OpenAI-compatible chat model.

For each scenario index ``i`` (kind, topic and scaling strategies are seeded by ``(seed, i)``):

1. **decompose**: the model writes a task of the kind (user query, sub-questions with answers and
   dependencies, final answer);
2. **document**: one OpenAI function schema per sub-question, plus the arguments of the call that answers it;
3. **integrate**: overlapping documents are merged (n functions -> m <= n), each sub-question mapped to a
   function and arguments (skipped when there is one sub-question);
4. **scale**: distractor tools (toolset extension) and/or extra optional parameters (parameter expansion);
5. **deploy**: Python code per function, validated in a separate resource-limited process
   (:mod:`toolgym.construct.llm.code_check`).

Every reply must be one JSON object valid against the stage's schema (:mod:`toolgym.construct.llm.prompts`) and pass
the stage's checks (:mod:`~toolgym.construct.llm.validate`); a rejected reply is asked again with the problem
(``attempts`` per stage), then the scenario is discarded with the reason ``"<stage>:<kind>"``.

**Journal and resume.** ``<out>/journal.jsonl`` is append-only, one JSON object per line, flushed per line:

* ``{"event": "start", "config": {...}, "time": ...}`` at the start of every run (a rerun must use the same
  result-defining settings: model, seed, topic, kind, temperature, max_tokens, attempts, response_format);
* ``{"event": "stage", "index": i, "stage": "decompose"|"document"|"integrate"|"scale", "output": {...},
  "rejected": [...]}`` when a stage of scenario ``i`` is done;
* ``{"event": "accepted", "index": i, "scenario": {...}, ...}`` or
  ``{"event": "discarded", "index": i, "stage": ..., "reason": "<stage>:<kind>", "detail": ..., ...}``.

A rerun skips indices that have an ``accepted``/``discarded`` line, continues unfinished indices after their
last journaled stage, drops a truncated last line, and ignores duplicate lines (the first one wins). Requests
that keep failing (server down, after ``retries`` with backoff) leave the scenario unfinished (nothing is
journaled for that stage), and after several such failures in a row no new scenario is started. Finally
``scenarios.jsonl`` (accepted scenarios, by index) is rewritten atomically from the journal, with
``manifest.json`` (a static pack in toolgym format) and ``report.json`` (attempted, accepted, discarded by
reason, missing).

Modules, one job each: :mod:`~toolgym.construct.llm.config` (``LLMBuildConfig``),
:mod:`~toolgym.construct.llm.prompts` (prompts and reply schemas per stage), :mod:`~toolgym.construct.llm.validate`
(the checks of replies), :mod:`~toolgym.construct.llm.stages` (one scenario's stages and its model requests),
:mod:`~toolgym.construct.llm.assemble` (plan and scenario record), :mod:`~toolgym.construct.llm.code_check`
(out-of-process validation of tool code, also the validator process: ``python -m
toolgym.construct.llm.code_check``), :mod:`~toolgym.construct.llm.journal`, :mod:`~toolgym.construct.llm.pack`
(pack and report) and :mod:`~toolgym.construct.llm.build` (``run_build``, ``arun_build``).
:mod:`~toolgym.construct.llm.phrase` (``toolgym build --phrase``: model-written queries of procedural scenarios)
and :mod:`~toolgym.construct.llm.phrase_rules` (when such a rewrite is accepted) reuse the model, journal and pack
format. Requests and their
retries are :mod:`toolgym.model_client`'s. This package's ``__init__`` imports nothing, so the validator process
starts without the build's imports.

``openai`` is imported only when a build starts (``pip install toolgym[eval]``).
"""
