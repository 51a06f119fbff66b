#!/usr/bin/env bash
# Runs the chaos simulation for seeds FIRST .. FIRST+COUNT-1, each seed in a process of its own
# (as a replay is), JOBS at a time, and prints progress. Exits 1 listing every failing seed.
#
#   scripts/sim-seeds.sh [COUNT] [FIRST]        # default: 200 seeds from 1
#   SIM_JOBS=2 scripts/sim-seeds.sh 10000 1     # the long sweep (scripts/sim-sweep.sh)
#   SIM_WORLD=fleet scripts/sim-seeds.sh 200 1  # the fleet world (sim/tests/fleet.rs) instead
#
# Why one process per seed: a dependency keeps a process-wide hash seed that is initialised by
# the first simulation that touches it, so a seed run after others in one process can take a
# different path than the same seed run alone. A process per seed makes every run exactly what
# `MADSIM_TEST_SEED=<seed>` replays.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-200}"
first="${2:-1}"
jobs="${SIM_JOBS:-2}"
world="${SIM_WORLD:-chaos}"
case "$world" in
  chaos) test_name=one_simulated_hour_holds_every_invariant; unit="simulated hours" ;;
  fleet) test_name=a_fleet_holds_every_invariant; unit="fleet worlds" ;;
  *) echo "sim-seeds: SIM_WORLD must be chaos or fleet" >&2; exit 2 ;;
esac
export test_name
export RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim

# Build once and find the test binary.
bin=$(cargo test -p chatbox-sim --test "$world" --no-run --locked --message-format=json 2>/dev/null \
  | sed -n "s/.*\"executable\":\"\([^\"]*$world-[^\"]*\)\".*/\1/p" | tail -n 1)
[ -x "$bin" ] || { echo "sim-seeds: could not build the $world simulation" >&2; exit 1; }

logs="target/sim-seeds-$world"
rm -rf "$logs"
mkdir -p "$logs"
start=$(date +%s)

run_seed() {
  local seed=$1
  if MADSIM_TEST_SEED="$seed" MADSIM_TEST_NUM=1 "$2" "$test_name" \
      --exact --nocapture >"$3/$seed.log" 2>&1; then
    rm -f "$3/$seed.log"
  else
    echo "$seed" >>"$3/failed"
  fi
}
export -f run_seed

last=$((first + count - 1))
done_count=0
for ((seed = first; seed <= last; seed += 100)); do
  batch_end=$((seed + 99 < last ? seed + 99 : last))
  seq "$seed" "$batch_end" | xargs -P "$jobs" -I{} bash -c 'run_seed "$@"' _ {} "$bin" "$logs"
  done_count=$((batch_end - first + 1))
  failed=$( [ -f "$logs/failed" ] && wc -l <"$logs/failed" || echo 0 )
  printf 'sim: seeds %d/%d done, %d failed (%ds elapsed, %d %s)\n' \
    "$done_count" "$count" "$failed" "$(( $(date +%s) - start ))" "$done_count" "$unit"
done

if [ -f "$logs/failed" ]; then
  for seed in $(sort -n "$logs/failed"); do
    echo "---- seed $seed (replay: MADSIM_TEST_SEED=$seed RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo test -p chatbox-sim --test $world $test_name -- --nocapture)"
    grep -v '^   ' "$logs/$seed.log" | grep -E 'violation|held|acknowledged|panicked|rate:|reply|resume|missed|shutdown|outbox|holds|invariant' | head -n 12
  done
  echo "sim: $(wc -l <"$logs/failed") of $count $world seeds FAILED: $(sort -n "$logs/failed" | tr '\n' ' ')"
  exit 1
fi
echo "sim: $count passed, 0 failed"
