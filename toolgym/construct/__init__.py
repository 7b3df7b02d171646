"""Environment construction: FTRL's five stages turn a domain spec into verified tool-use scenarios.

Modules: :mod:`~toolgym.construct.spec` (the domain spec format), :mod:`~toolgym.construct.decompose` (stage 1),
:mod:`~toolgym.construct.document` (2), :mod:`~toolgym.construct.integrate` (3), :mod:`~toolgym.construct.scale`
(4), :mod:`~toolgym.construct.deploy` (5: tool code + verification), :mod:`~toolgym.construct.tool_docs` (the
tool-document model of stages 2-5), :mod:`~toolgym.construct.pipeline` (``BuildConfig``, the ``generate`` that
manifests name, ``rebuild``, domain discovery), :mod:`~toolgym.construct.cli` (``toolgym build``) and
``domains/`` (one module per domain). The ``openai`` backend drives the same stages with a chat model:
:mod:`~toolgym.construct.llm` (stages, prompts, reply checks, out-of-process validation of tool code, journal,
static pack).

The package was called ``toolgym.build`` before; refs under that name in saved manifests and records still
resolve (:func:`toolgym.packs.current_ref`).
"""
