"""Train/test splits: the split of a key follows from a hash of the key alone.

A generator asked for one split keeps only what hashes into it, so a key is in exactly one split whatever the
seeds that produced it: the splits are disjoint by construction. A key's *bucket* is the first
``digest_bytes`` bytes of ``sha256(key)``, read big-endian, mod :data:`BUCKETS`; :data:`TEST_SHARE` of the
buckets hold the test split. Two kinds of keys use two rules, kept as they are because changing a rule would
move keys (hence scenarios) between splits:

* :data:`SCENARIO_IDS`: a scenario's content id (hand-written domains such as FlightBooking draw until the id
  falls in the split), 4 bytes, the lowest buckets are test;
* :data:`CHAIN_KEYS`: a chain key ``"<domain>|<chain signature>|<starting record id>"``
  (:mod:`toolgym.construct.decompose` starts only chains in the split), 8 bytes, the highest buckets are test.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SPLITS = ("train", "test")
BUCKETS = 10
TEST_SHARE = 2  # buckets (of BUCKETS) held out for testing, under either rule


@dataclass(frozen=True)
class SplitRule:
    """How one kind of key is bucketed: ``digest_bytes`` of its sha256, and the buckets that are test."""

    digest_bytes: int
    test_buckets: range

    def bucket(self, key: str) -> int:
        """The bucket (0 .. BUCKETS - 1) of ``key``."""
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[: self.digest_bytes], "big") % BUCKETS


SCENARIO_IDS = SplitRule(4, range(TEST_SHARE))
CHAIN_KEYS = SplitRule(8, range(BUCKETS - TEST_SHARE, BUCKETS))


def split_of(key: str, rule: SplitRule = SCENARIO_IDS) -> str:
    """The split (``"train"`` or ``"test"``) that ``key`` belongs to under ``rule``."""
    return "test" if rule.bucket(key) in rule.test_buckets else "train"


def check_split(split: str | None) -> None:
    """Raise the one error every ``split`` knob gives for a value that names no split."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be None or one of {SPLITS}, got {split!r}")


def in_split(key: str, split: str | None, rule: SplitRule) -> bool:
    """Whether ``key`` may be used for ``split``; every key may when ``split`` is None."""
    if split is None:
        return True
    check_split(split)
    return split_of(key, rule) == split
