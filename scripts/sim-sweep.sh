#!/usr/bin/env bash
# Long seed sweep of the chaos simulation: `scripts/sim-sweep.sh [SEEDS] [FIRST_SEED]`
# (default 10000 seeds from 1). Runs in batches of 100 and prints progress after each batch.
# A failing seed prints `MADSIM_TEST_SEED=<seed>`; replay it with
#   MADSIM_TEST_SEED=<seed> RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
#     cargo test -p chatbox-sim --test chaos one_simulated -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-10000}"
first="${2:-1}"
batch=100
export RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim
cargo test -p chatbox-sim --test chaos --no-run --locked >/dev/null 2>&1
start=$(date +%s)
done_seeds=0
while [ "$done_seeds" -lt "$seeds" ]; do
  n=$(( seeds - done_seeds < batch ? seeds - done_seeds : batch ))
  seed=$(( first + done_seeds ))
  if ! MADSIM_TEST_SEED="$seed" MADSIM_TEST_NUM="$n" \
      cargo test -p chatbox-sim --test chaos one_simulated --locked -q >target/sim-sweep.log 2>&1; then
    grep -E "MADSIM_TEST_SEED|violation|panicked" target/sim-sweep.log | head -20
    echo "FAILED in seeds $seed..$(( seed + n - 1 )) (full log: target/sim-sweep.log)"
    exit 1
  fi
  done_seeds=$(( done_seeds + n ))
  elapsed=$(( $(date +%s) - start ))
  printf 'seeds %d/%d ok (%ds elapsed, %d simulated hours)\n' "$done_seeds" "$seeds" "$elapsed" "$done_seeds"
done
echo "sweep passed: $seeds seeds x 1 simulated hour"
