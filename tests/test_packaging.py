"""The wheel carries the packs: envs_generated/ is installed inside the package."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_envs_generated(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("toolgym-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packs = sorted(p.parent.name for p in ROOT.glob("envs_generated/*/manifest.json"))
    assert packs
    for pack in packs:
        assert f"toolgym/envs_generated/{pack}/manifest.json" in names
    assert "toolgym/envs_generated/ftrl_sample/records.jsonl" in names
    assert "toolgym/construct/tool_code/flight_booking.py" in names  # FlightBooking's TOOL_SOURCE
    assert not [n for n in names if n.endswith("ruff.toml")]  # lint config of the source tree only
