#!/usr/bin/env bash
# Runs every test tier that CI runs, in order, sharing target directories between steps.
# Slow sweeps (long fuzzing, long seed sweeps, soak, load) are separate commands (README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PROPTEST_CASES="${PROPTEST_CASES:-256}"

step() { printf '\n==> %s\n' "$*"; }

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "lint (clippy, all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the server binary (the integration tests start the real binary)"
cargo build -p chatbox --bin chatbox --locked

step "unit, property, model-based and integration tests (cargo test --workspace)"
cargo test --workspace --locked 2>&1 | tee target/test-all.log

step "loom model checking of core::shared (own target dir)"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
  cargo test -p chatbox-core --release --locked --test loom 2>&1 | tee -a target/test-all.log

step "deterministic simulation under madsim: seeds 1..=200 x 1 simulated hour (own target dir)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  MADSIM_TEST_SEED="${MADSIM_TEST_SEED:-1}" MADSIM_TEST_NUM="${MADSIM_TEST_NUM:-200}" \
  cargo test -p chatbox-sim --locked 2>&1 | tee -a target/test-all.log

# One closing line for the whole run, summed over every test binary above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1); if ($(i) ~ /^ignored/) s += $(i-1) } }
     END { printf "\ntotal: %d passed, %d failed, %d skipped\n", p, f, s }' target/test-all.log
