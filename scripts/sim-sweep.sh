#!/usr/bin/env bash
# Long seed sweep of the chaos simulation: `scripts/sim-sweep.sh [SEEDS] [FIRST_SEED]`
# (default 10000 seeds from 1), each seed in its own process, SIM_JOBS (default 2) at a time,
# with a progress line per 100 seeds. A failing seed is listed with its violations and the
# command that replays it; see SIMULATION.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/sim-seeds.sh "${1:-10000}" "${2:-1}"
