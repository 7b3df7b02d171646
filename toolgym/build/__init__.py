"""The construction pipeline: FTRL's five stages turn a domain spec into verified tool-use scenarios.

Modules: :mod:`~toolgym.build.spec` (the domain spec format), :mod:`~toolgym.build.decompose` (stage 1),
:mod:`~toolgym.build.document` (2), :mod:`~toolgym.build.integrate` (3), :mod:`~toolgym.build.scale` (4),
:mod:`~toolgym.build.deploy` (5: tool code + verification), :mod:`~toolgym.build.functions` (the function
document model of stages 2-5), :mod:`~toolgym.build.pipeline` (``BuildConfig``, ``generate``),
:mod:`~toolgym.build.procedural` (the generator manifests name; ``rebuild``), :mod:`~toolgym.build.cli`
(``toolgym build``) and ``domains/`` (one module per domain). The ``openai`` backend drives the same stages
with a chat model: :mod:`~toolgym.build.llm_backend` (stages, journal, static pack),
:mod:`~toolgym.build.prompts` and :mod:`~toolgym.build.code_check` (out-of-process validation of tool code).
"""
