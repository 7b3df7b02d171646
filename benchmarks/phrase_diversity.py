"""Query diversity before and after a phrasing build: distinct n-grams and the share of template-like queries.

Each query is masked first: every value the gold calls take from it (``query_values``: ids, update values) and
every remaining token holding a digit becomes ``<v>``, so the numbers measure wording, not ids. Then, over a
set of queries:

* **distinct-n** (n = 1..4): distinct word n-grams of the masked queries / all their word n-grams;
* **template share**: the share of queries made of the generator's templates: each unit of the query (its intro
  and each numbered part ``(1) ...``) matches one of ``toolgym.construct.decompose``'s ``READ_TEMPLATES``,
  ``WRITE_TEMPLATES`` or ``INTROS`` in full, a slot matching any text (every procedural query does);
* **near-template share**: the share of queries each of whose masked units equals a masked unit of the original
  query of *another* scenario of the same domain (leave one out: a query is never matched by its own original),
  i.e. the same words around other ids;
* **verbatim share**: the share of queries equal to their procedural original.

``--pack DIR`` (a pack written by ``toolgym build --phrase``) compares its original queries (``before``) with its
queries (``after``: accepted rewrites, original queries where the rewrite was rejected) and the accepted rewrites
alone with their originals. Without ``--pack`` only ``before`` is measured, on ``--scenarios`` procedural
scenarios drawn as the phrasing build draws them (every domain, ``--seed``).

    python benchmarks/phrase_diversity.py [--scenarios 1000] [--pack envs_generated/phrased_mix]

Prints a table and writes ``benchmarks/results/phrase_diversity.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

try:
    import toolgym  # noqa: F401
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolgym.construct.decompose import INTROS, READ_TEMPLATES, WRITE_TEMPLATES
from toolgym.construct.llm.phrase import source_scenarios
from toolgym.construct.llm.phrase_rules import query_values
from toolgym.construct.pipeline import find_domains
from toolgym.packs import load_scenarios
from toolgym.scenario import Scenario

RESULTS = Path(__file__).resolve().parent / "results" / "phrase_diversity.json"
MAX_N = 4
WORD = re.compile(r"<v>|[a-z]+(?:'[a-z]+)?")


def masked(query: str, values: list[str]) -> str:
    """``query`` with the given values and every other token holding a digit replaced by ``<v>``."""
    for v in sorted(values, key=len, reverse=True):
        query = re.sub(rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])", "<v>", query)
    return re.sub(r"\S*\d\S*", "<v>", query)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def units(query: str) -> list[str]:
    """The template units of a query: its intro and each numbered part (``(1) ...``), spaces normalised."""
    return [" ".join(p.split()) for p in re.split(r"\(\d+\)", query) if p.strip()]


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    return re.compile("".join(r"\d+" if p == "{n}" else ".+" if p.startswith("{") else re.escape(p) for p in parts))


TEMPLATES = [_template_regex(t) for t in (*READ_TEMPLATES, *WRITE_TEMPLATES, *INTROS)]


def from_templates(query: str) -> bool:
    """Whether every unit of ``query`` is one of the generator's templates with its slots filled."""
    return all(any(t.fullmatch(u) for t in TEMPLATES) for u in units(query))


def diversity(rows: list[tuple[Scenario, str, str]]) -> dict:
    """Metrics of the queries ``q`` of ``rows`` = (scenario, q, its procedural original).

    Near-template share: each masked unit of a query equals a masked unit of the original of another scenario
    of the same domain in ``rows`` (leave one out, so a query is never matched by its own original)."""
    masks = [masked(q, query_values(sc, original)) for sc, q, original in rows]
    own = [units(masked(original, query_values(sc, original)).lower()) for sc, _, original in rows]
    out: dict = {"queries": len(rows)}
    for n in range(1, MAX_N + 1):
        grams: Counter = Counter()
        for m in masks:
            w = words(m)
            grams.update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
        total = sum(grams.values())
        out[f"distinct_{n}"] = len(grams) / total if total else 0.0
    reference: dict[str, Counter] = defaultdict(Counter)
    for (sc, _, _), u in zip(rows, own, strict=True):
        reference[sc.metadata.get("domain")].update(set(u))
    template = 0
    for (sc, _, _), m, mine in zip(rows, masks, own, strict=True):
        ref, mine_set = reference[sc.metadata.get("domain")], set(mine)
        template += all(ref[u] - (u in mine_set) > 0 for u in units(m.lower()))
    n = len(rows) or 1
    out["template_share"] = sum(from_templates(q) for _, q, _ in rows) / n
    out["near_template_share"] = template / n
    out["verbatim_share"] = sum(q == original for _, q, original in rows) / n
    out["mean_words"] = sum(len(words(q)) for _, q, _ in rows) / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=1000, help="procedural scenarios in all (without --pack)")
    ap.add_argument("--pack", help="a pack folder written by `toolgym build --phrase`")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    report: dict = {"masking": "query_values and digit-holding tokens -> <v>", "sets": {}}
    if args.pack:
        pack = load_scenarios(Path(args.pack) / "scenarios.jsonl")
        meta = [s.metadata.get("phrase") or {} for s in pack]
        if not all(m.get("original_query") for m in meta):
            raise SystemExit(f"{args.pack} was not written by `toolgym build --phrase` (no original queries)")
        both = [(s, m["original_query"]) for s, m in zip(pack, meta, strict=True)]
        accepted = [(s, o) for (s, o), m in zip(both, meta, strict=True) if m.get("accepted")]
        report["pack"] = str(args.pack)
        report["model"] = meta[0].get("model")
        report["acceptance_rate"] = len(accepted) / len(pack)
        report["sets"]["before"] = diversity([(s, o, o) for s, o in both])
        report["sets"]["after"] = diversity([(s, s.query, o) for s, o in both])
        if accepted:
            report["sets"]["accepted: before"] = diversity([(s, o, o) for s, o in accepted])
            report["sets"]["accepted: after"] = diversity([(s, s.query, o) for s, o in accepted])
    else:
        domains = list(find_domains())
        per = -(-args.scenarios // len(domains))
        sources = source_scenarios(domains, per, args.seed)
        report["sets"]["before"] = diversity([(s, s.query, s.query) for s in sources])

    head = f"{'set':<18} {'queries':>7} " + " ".join(f"{'dist-' + str(n):>7}" for n in range(1, MAX_N + 1))
    print(head + f" {'template':>8} {'near-tpl':>8} {'verbatim':>8} {'words':>6}")
    for name, row in report["sets"].items():
        cells = " ".join(f"{row[f'distinct_{n}']:>7.4f}" for n in range(1, MAX_N + 1))
        print(
            f"{name:<18} {row['queries']:>7} {cells} {row['template_share']:>8.3f} "
            f"{row['near_template_share']:>8.3f} {row['verbatim_share']:>8.3f} {row['mean_words']:>6.1f}"
        )
    if "acceptance_rate" in report:
        print(f"accepted rewrites: {100 * report['acceptance_rate']:.1f}% ({report['model']})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
