#!/usr/bin/env bash
# The CPU demo: a short SFT warm start of the small policy (FlightBooking), then GRPO and REINFORCE++ on
# HotelBooking and Banking, evaluated on their held-out test splits; prints the before/after table and writes
# runs/demo/curves.png. Extra flags go to the demo (e.g. --env-ids ToolGym/FlightBooking-v0 --rl-steps 60).
set -euo pipefail
export OMP_NUM_THREADS=1
python -m toolgym_rl.demo --out runs/demo "$@"
