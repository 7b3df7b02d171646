"""No module imports upward: the layers of the README's Layout ("each imports only from below"), checked on the source.

Lazy imports inside functions count too: they are how an upward dependency hides. A new module gets a layer here
(the test fails for any module it does not place), which is the moment to decide where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "toolgym"

# Longest prefix wins. 1: data model, sandbox, parsing, reward, model client and other leaf helpers;
# 2: the env; 3: construction (pipeline, domains) and suites, which produce scenario sources;
# 4: what wires and drives envs (registry, vector envs, eval, export, Ray); 5: trainer adapters and CLIs.
LAYERS = {
    "toolgym.scenario": 1,
    "toolgym.splits": 1,
    "toolgym.sandbox": 1,
    "toolgym.calls": 1,
    "toolgym.reward": 1,
    "toolgym.arguments": 1,
    "toolgym.jsonl": 1,
    "toolgym.model_client": 1,
    "toolgym.prompts": 1,
    "toolgym.spaces": 1,
    "toolgym.packs": 1,
    "toolgym.sources": 1,
    "toolgym.pool": 1,
    "toolgym.env": 2,
    "toolgym.curriculum": 2,
    "toolgym.agents": 2,
    "toolgym.construct": 3,
    "toolgym.construct.llm.phrase": 3,  # the phrasing build and its rules (phrase_rules) play scenarios in the env
    "toolgym.suites": 3,
    "toolgym.suites.bfcl_multi_turn": 3,
    "toolgym": 4,  # the package itself registers the ids on import
    "toolgym.registry": 4,
    "toolgym.vector": 4,
    "toolgym.distributed": 4,
    "toolgym.evaluate": 4,
    "toolgym.harness": 4,
    "toolgym.export": 4,
    "toolgym.integrations": 5,
    "toolgym.cli": 5,
    "toolgym.construct.cli": 5,
    "toolgym.eval_cli": 5,
    "toolgym.export_cli": 5,
    "toolgym.serve_cli": 5,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer(module: str) -> int:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} has no layer in tests/test_layers.py: add it")
    return LAYERS[best]


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # ``from toolgym import sandbox`` imports the module toolgym.sandbox, not the package's namespace
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in out if m == "toolgym" or m.startswith("toolgym.")}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_imports(module):
    own = layer(module)
    up = sorted(m for m in _imports(module, MODULES[module]) if layer(m) > own and not module.startswith(m + "."))
    assert not up, f"{module} (layer {own}) imports from above: " + ", ".join(f"{m} ({layer(m)})" for m in up)
