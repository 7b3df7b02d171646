"""Fast in-process sandbox for tool source code: RestrictedPython plus a step budget and size guards.

Tools are plain Python functions (hand-written, LLM-written or imported from benchmarks) that run on every env
step, so this package trades a subprocess's hard isolation for about a microsecond of overhead per call:

* each distinct source is compiled once per process (cache keyed by sha256) by a RestrictingNodeTransformer
  subclass that rejects dunder names (but the protocol methods of a tool's own classes), imports outside the
  allow-list, metaclasses and ``global`` (except ``state``) and rewrites the operations that can explode
  (``* ** << + %``, f-string fields, ``str()`` calls, slice and augmented assignment) into guarded helpers;
  attribute loads and subscripts stay native unless the name needs a guard (single-underscore and protocol
  attributes are read through :mod:`~toolgym.sandbox.owned`: the tool's own objects only); ``eval``/``exec``
  compile their text with the same policy (:mod:`~toolgym.sandbox.evaluator`);
* a deterministic step budget: ``_tick_()`` at the start of every function, lambda, loop body and
  comprehension item; exhaustion raises a ``BaseException`` and keeps raising, so ``except:`` cannot hide it;
* a wall-clock backstop that holds on any thread: a clock check at every 1024-tick checkpoint, plus SIGALRM
  (armed lazily at the first checkpoint) on the main thread, and on other threads a per-call deadline kept by
  one watchdog thread, which raises the abort in the call's thread (``PyThreadState_SetAsyncExc``) so even
  library code that never ticks (``fractions``, ``statistics``) stops; plus an RSS-growth backstop;
* tool code's ``re`` runs on the ``regex`` engine, with re's signatures, errors and reading of patterns, and
  with ``timeout=`` the call's remaining time: a backtracking match returns a timeout on any thread, and it
  releases the GIL meanwhile, so it never freezes other threads (re's matcher holds the GIL and only polls
  the main thread's signals);
* a deliberate builtins allow-list, read-only proxies of the allow-listed stdlib modules (``random`` seeded per
  episode through ``Toolbox.reseed``), and a guarded getattr
  that blocks dunder/frame attributes, routes ``str.format`` through a checked formatter and bounds the
  width/size arguments of padding, replace, join, etc.

Size guards refuse the C calls whose cost follows from their arguments before they start (``pow(10, 10**8)``,
``'x' * 10**9``, ``sorted(range(10**11))``, ...), so what one C call can do is bounded by ``max_size``.
Residual risks (closing them needs a subprocess): work done inside one C call on aliased or deeply nested
data the guards cannot see, e.g. ``hash()`` of a >100k-deep nested tuple (segfaults CPython 3.11), ``==`` of
two exponentially aliased lists, ``int(Decimal('1e999999999'))``, ``re.sub`` back-references on huge input;
quadratic exception-context chains in deep recursion (the clock still stops those). Such a call holds the
GIL, so no thread can stop it and every thread of the process waits. The env's ``isolation="process"``
(:mod:`toolgym.sandbox.process`) closes them, from any thread: it runs the calls in a forked worker that is

Modules, in the order a call meets them:

* :mod:`~toolgym.sandbox.policy`: the compile policy and the process-wide compile cache (``ToolSourceError``);
  :mod:`~toolgym.sandbox.attrs` holds the attribute names it leaves to the runtime guards;
* :mod:`~toolgym.sandbox.toolbox`: :class:`Toolbox`, :class:`ToolOutcome`, the failure feedback and
  :func:`check_tool_sources` (what pack loading calls);
* :mod:`~toolgym.sandbox.runtime`: one Toolbox's builtins, wired from :mod:`~toolgym.sandbox.clock` (budget,
  clock, watchdog, memory backstop), :mod:`~toolgym.sandbox.guards` (size guards, getattr, builtins),
  :mod:`~toolgym.sandbox.modules` (the importable stdlib proxies), :mod:`~toolgym.sandbox.owned` (the tool's own
  classes), :mod:`~toolgym.sandbox.evaluator` (``eval``/``exec``) and :mod:`~toolgym.sandbox.regex_shim`;
* :mod:`~toolgym.sandbox.output`: the bounded text a result becomes (:func:`serialize_output`);
* :mod:`~toolgym.sandbox.process`: ``isolation="process"``, the calls in a forked worker.
"""

from toolgym.sandbox.attrs import _ALLOWED_MODULES
from toolgym.sandbox.clock import _WATCHDOG as _WATCHDOG  # the watchdog thread, whose aborts tests count
from toolgym.sandbox.output import serialize_output
from toolgym.sandbox.policy import ToolSourceError, compile_tool_source, def_name
from toolgym.sandbox.toolbox import Toolbox, ToolObject, ToolOutcome, check_tool_sources

ALLOWED_MODULES: tuple[str, ...] = tuple(_ALLOWED_MODULES)  # the stdlib modules tool code may import

__all__ = [
    "ALLOWED_MODULES",
    "ToolObject",
    "ToolOutcome",
    "ToolSourceError",
    "Toolbox",
    "check_tool_sources",
    "compile_tool_source",
    "def_name",
    "serialize_output",
]
