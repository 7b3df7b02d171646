#!/usr/bin/env bash
# The CPU demo: short SFT warm start of the small policy, then GRPO and REINFORCE++ on FlightBooking and
# HotelBooking (both evaluated on their held-out test splits); prints the before/after table and writes runs/demo/curves.png. Extra flags go to the demo.
set -euo pipefail
export OMP_NUM_THREADS=1
python -m toolgym_rl.demo --out runs/demo "$@"
