"""Importers for external benchmark suites, one module per suite.

Each suite module turns a benchmark's own data into static scenario packs and names the score the benchmark
itself gives a turn (added to the step's reward components beside FTRL's). :func:`manifests` lists the packs
whose data is present; it only looks for files, so ``import toolgym`` stays cheap and a suite whose data is
not installed simply registers nothing.
"""

from __future__ import annotations

from typing import Any

from toolgym.suites import bfcl, bfcl_multi_turn

SUITES = (bfcl, bfcl_multi_turn)


def manifests() -> list[dict[str, Any]]:
    """Registry manifests of every suite pack whose data is present."""
    return [m for suite in SUITES for m in suite.manifests()]
