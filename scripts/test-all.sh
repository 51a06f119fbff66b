#!/usr/bin/env bash
# Runs every test tier that CI runs, in order, sharing target directories between steps.
# Slow sweeps (long fuzzing, long seed sweeps, soak, load) are separate commands (README.md).
#
# Installs what the tests need, outside the clone, once per machine: SecantusDB (a
# MongoDB-compatible server, scripts/mongo-server.sh), aiosmtpd (scripts/smtp-server.sh) and moto
# (an S3-compatible server, scripts/s3-server.sh) from PyPI into ~/.cache/chatbox-tools, Debian's
# Chromium and playwright-core from npm (scripts/browser-install.sh), and g++ for libFuzzer
# (scripts/fuzz-install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PROPTEST_CASES="${PROPTEST_CASES:-256}"
# CI builds each target once, so incremental state would only take disk (4.5 GB in target/debug).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
started=$(date +%s)

step() { printf '\n==> %s (%ds)\n' "$*" "$(( $(date +%s) - started ))"; }
mkdir -p target
: >target/test-all.log

step "test servers and browser (SecantusDB for MongoDB, aiosmtpd for SMTP, moto for S3, Chromium + playwright-core; cached outside the clone)"
bash scripts/mongo-server.sh install
bash scripts/redis-server.sh install
bash scripts/smtp-server.sh install
bash scripts/s3-server.sh install
bash scripts/browser-install.sh

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "lint (clippy, all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the server binary (the integration tests start the real binary)"
cargo build -p chatbox --bin chatbox --locked

step "unit, property, model-based and integration tests on the embedded store (cargo test --workspace)"
cargo test --workspace --locked 2>&1 | tee -a target/test-all.log

# Two tests at a time: SecantusDB is one Python process on WiredTiger, and a file's six to eight
# servers creating their databases and indexes at once have stalled it for over 20 s (three CI
# failures in two days). The tier takes ~90 s this way.
step "the chat-path and HTTP API integration tests again, on MongoDB"
mongo_dir="$(mktemp -d "${TMPDIR:-/tmp}/chatbox-ci-mongo.XXXXXX")"
mongo_out="$mongo_dir/stdout"
bash scripts/mongo-server.sh start --dir "$mongo_dir/db" --port 0 --exit-with $$ >"$mongo_out" 2>"$mongo_dir/stderr" &
mongo_pid=$!
trap 'kill "$mongo_pid" 2>/dev/null || true; rm -rf "$mongo_dir"' EXIT
for _ in $(seq 600); do
  grep -q '^listening ' "$mongo_out" 2>/dev/null && break
  kill -0 "$mongo_pid" 2>/dev/null || { cat "$mongo_dir/stderr" >&2; echo "MongoDB test server failed" >&2; exit 1; }
  sleep 0.1
done
mongo_addr="$(sed -n 's/^listening //p' "$mongo_out" | head -n 1)"
[ -n "$mongo_addr" ] || { echo "MongoDB test server did not report its address" >&2; exit 1; }
echo "MongoDB-compatible server on $mongo_addr"
CHATBOX_TEST_MONGO_URI="mongodb://$mongo_addr/?directConnection=true" \
  cargo test -p chatbox-tests --locked \
    --test chat_auth --test chat_limits --test chat_sessions --test chat_shutdown \
    --test chat_stream --test http_admin --test http_cors --test http_limits \
    --test http_sessions --test e2e_admin_chat --test e2e_ops --test providers --test fleet \
    --test fleet_resume --test fleet_limits --test fleet_assist --test fleet_deploy \
    -- --test-threads=2 2>&1 | tee -a target/test-all.log

step "real-browser tests: Playwright driving Debian's Chromium against the real server"
scripts/browser-tests.sh 2>&1 | tee -a target/test-all.log

step "loom model checking of core::shared (own target dir)"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
  cargo test -p chatbox-core --release --locked --test loom 2>&1 | tee -a target/test-all.log

step "lint the simulated build too (clippy under --cfg madsim: the simulator and the server it runs)"
# (the shell's and core's own unit tests use tokio's paused clock and do not build under madsim)
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  cargo clippy -p chatbox-sim --all-targets --locked -- -D warnings 2>&1 | tee -a target/test-all.log
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  cargo clippy -p chatbox -p chatbox-core --lib --locked -- -D warnings 2>&1 | tee -a target/test-all.log

step "deterministic simulation under madsim: smoke and replay proof (own target dir)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim MADSIM_TEST_SEED=1 \
  cargo test -p chatbox-sim --locked -- --skip one_simulated_hour 2>&1 | tee -a target/test-all.log

step "deterministic simulation: seeds 1..=200, one simulated hour each, a process per seed"
scripts/sim-seeds.sh "${SIM_SEEDS:-200}" 1 2>&1 | tee -a target/test-all.log

step "deterministic simulation: the fleet world (3 instances, simulated bus), seeds 1..=200"
SIM_WORLD=fleet scripts/sim-seeds.sh "${SIM_FLEET_SEEDS:-200}" 1 2>&1 | tee -a target/test-all.log

step "fuzzing: build every target with libFuzzer, run each ${FUZZ_SECONDS:-20} s from the committed corpus"
bash scripts/fuzz-install.sh
FUZZ_LOCKED=1 scripts/fuzz-smoke.sh 2>&1 | tee -a target/test-all.log

# What the run left on disk, so a growing footprint shows before a CI machine runs out.
du -sh target/* fuzz/target 2>/dev/null | sort -h | tail -n 5 || true

# One closing line for the whole run, summed over every test binary, the browser tier and the
# seed sweep above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1); if ($(i) ~ /^ignored/) s += $(i-1) } }
     /^sim: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
     /^browser: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
     END { printf "\nall tiers done in %ds\ntotal: %d passed, %d failed, %d skipped\n", '"$(( $(date +%s) - started ))"', p, f, s }' target/test-all.log
