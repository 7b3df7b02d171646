#!/usr/bin/env bash
# Install the external suites' data packages into the active Python environment, for the suite tests
# (tests/test_suite_bfcl.py) and the ToolGym/BFCL-* envs. Idempotent.
#
# bfcl-eval ships BFCL v4's data and checker. It is installed with --no-deps: its requirements pin numpy==1.26.4
# and pull every model SDK its handlers import (and sentence-transformers, i.e. torch), none of which toolgym
# reads. toolgym reads only its data files; the differential test runs BFCL's own AST checker module with the
# one module that imports those handlers (bfcl_eval.constants.model_config) replaced by a stand-in.
set -euo pipefail

BFCL_EVAL_VERSION=2026.3.23

PY=python
command -v "$PY" >/dev/null 2>&1 || PY=python3

have=$("$PY" -c 'import importlib.metadata as md
try:
    print(md.version("bfcl-eval"))
except md.PackageNotFoundError:
    print("")')
if [ "$have" = "$BFCL_EVAL_VERSION" ]; then
  echo "[suites_setup] bfcl-eval $BFCL_EVAL_VERSION already installed"
else
  "$PY" -m pip install --no-deps "bfcl-eval==$BFCL_EVAL_VERSION"
fi
"$PY" -c 'import importlib.util, pathlib, sys
spec = importlib.util.find_spec("bfcl_eval")
data = pathlib.Path(next(iter(spec.submodule_search_locations))) / "data" / "BFCL_v4_simple_python.json"
sys.exit(0 if data.is_file() else "bfcl-eval is installed but its data file %s is missing" % data)'
echo "[suites_setup] bfcl-eval $BFCL_EVAL_VERSION ready"
