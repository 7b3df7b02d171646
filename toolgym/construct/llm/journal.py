"""``journal.jsonl``: the build's append-only record, from which a rerun resumes and the pack is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolgym.jsonl import complete_lines

JOURNAL = "journal.jsonl"


class Journal:
    """``journal.jsonl``: append-only, one JSON object per line, flushed per line."""

    def __init__(self, path: Path):
        self.path = path
        self.starts: list[dict[str, Any]] = []
        self.stages: dict[int, dict[str, Any]] = {}
        self.finals: dict[int, dict[str, Any]] = {}
        self._f: Any = None

    def load(self) -> Journal:
        for line in complete_lines(self.path):
            try:
                self._take(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return self

    def _take(self, rec: dict[str, Any]) -> None:
        event = rec["event"]
        if event == "start":
            self.starts.append(rec)
        elif event == "stage":
            self.stages.setdefault(int(rec["index"]), {}).setdefault(rec["stage"], rec)
        elif event in ("accepted", "discarded"):
            self.finals.setdefault(int(rec["index"]), rec)

    def append(self, rec: dict[str, Any]) -> None:
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        self._f.flush()
        self._take(rec)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
