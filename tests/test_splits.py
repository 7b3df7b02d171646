"""toolgym.splits: both split rules are pinned, since changing one would move scenarios between splits."""

import pytest

from toolgym import scenario, splits
from toolgym.construct import decompose


def test_scenario_id_rule_is_pinned():
    got = "".join(splits.split_of(f"flight-{i:010x}")[1] for i in range(40))
    assert got == "rerrrrrrrerrereerrrrrrrrrrrrrrrrrrrrrerr"  # r = train, e = test
    assert scenario.split_of is splits.split_of and scenario.SPLITS is splits.SPLITS


def test_chain_key_rule_is_pinned():
    keys = [f"HotelBooking|c|G{i}" for i in range(40)]
    assert "".join(str(splits.CHAIN_KEYS.bucket(k)) for k in keys) == "6500355214441694592294528235157445500847"
    for k in keys:
        test = decompose.split_bucket(k) >= 8
        assert splits.split_of(k, splits.CHAIN_KEYS) == ("test" if test else "train")
        assert decompose.in_split(k, "test") is test and decompose.in_split(k, "train") is not test


def test_in_split_takes_every_key_for_none_and_refuses_unknown_splits():
    assert splits.in_split("any", None, splits.CHAIN_KEYS)
    with pytest.raises(ValueError, match="validation"):
        splits.in_split("any", "validation", splits.SCENARIO_IDS)
