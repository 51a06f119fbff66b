#!/usr/bin/env bash
# The real-browser test tier: tests/browser/*.test.js (node:test + playwright-core driving
# Debian's Chromium) against the real server binary.
#
#   scripts/browser-tests.sh [FILE…]     # default: every tests/browser/*.test.js
#
# Installs what it needs first (scripts/browser-install.sh). Uses the binary at
# ${CHATBOX_BIN:-target/debug/chatbox} (built with `cargo build -p chatbox --bin chatbox` when
# missing). Screenshots go to ${BROWSER_ARTIFACTS:-target/browser-artifacts}. Files run one at
# a time (the machine has 2 cores), each test with a time limit. The last line is
# `browser: N passed, M failed`; the exit status is non-zero when any test failed (or none ran).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here" || exit 2

summary() { echo "browser: $1 passed, $2 failed"; }

modules="$(scripts/browser-install.sh --print)" || { summary 0 1; exit 1; }
export NODE_PATH="$modules${NODE_PATH:+:$NODE_PATH}"

export CHATBOX_BIN="${CHATBOX_BIN:-$here/target/debug/chatbox}"
if [ ! -x "$CHATBOX_BIN" ]; then
  echo "browser-tests.sh: building $CHATBOX_BIN" >&2
  cargo build -p chatbox --bin chatbox >&2 || { summary 0 1; exit 1; }
fi
export BROWSER_ARTIFACTS="${BROWSER_ARTIFACTS:-$here/target/browser-artifacts}"
mkdir -p "$BROWSER_ARTIFACTS"

if [ $# -gt 0 ]; then
  files=("$@")
else
  files=(tests/browser/*.test.js)
fi

tap="$BROWSER_ARTIFACTS/results.tap"
# spec for people on stdout, TAP into a file for the counts.
node --test --test-concurrency=1 --test-timeout="${BROWSER_TEST_TIMEOUT_MS:-90000}" \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  "${files[@]}"
status=$?

# The run's totals are the last `# pass N` / `# fail N` / `# cancelled N` lines of the TAP
# stream (a test cut by its time limit counts as failed).
passed="$(awk '/^# pass [0-9]+$/ { n = $3 } END { print n + 0 }' "$tap" 2>/dev/null)"
failed="$(awk '/^# (fail|cancelled) [0-9]+$/ { n[$2] = $3 } END { print n["fail"] + n["cancelled"] }' "$tap" 2>/dev/null)"
passed="${passed:-0}"
failed="${failed:-0}"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # the runner itself failed (a file that crashed, a timeout outside a test)
fi
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # ran no test
fi
summary "$passed" "$failed"
[ "$failed" -eq 0 ]
