#!/usr/bin/env bash
# Fuzz smoke test: builds every fuzz target with stable Rust (fuzz/README.md) and runs each for
# about FUZZ_SECONDS (default 20) seconds, starting from a copy of the committed corpus in a
# temporary directory (the repository is not modified; crash inputs go to fuzz/artifacts/).
# Fails if any target crashes. Prints runs and execs/s per target.
#
#   scripts/fuzz-smoke.sh                   # all four targets, 20 s each
#   FUZZ_TARGETS=core_ops FUZZ_SECONDS=60 scripts/fuzz-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../fuzz/fuzz-lib.sh
source fuzz/fuzz-lib.sh

secs="${FUZZ_SECONDS:-20}"
work="$(mktemp -d "${TMPDIR:-/tmp}/chatbox-fuzz-smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT

start=$(date +%s)
fuzz_build
built=$(date +%s)

failed=()
summaries=()
for t in $(fuzz_targets); do
  mkdir -p "$work/corpus/$t"
  cp -R "fuzz/corpus/$t/." "$work/corpus/$t/"
  echo "==> fuzzing $t for ${secs}s"
  status=0
  fuzz_run "$t" "$secs" "$work/$t.log" "$work/corpus/$t" || status=$?
  summaries+=("$(fuzz_summary "$t" "$work/$t.log" "$status")")
  if [ "$status" != 0 ]; then
    failed+=("$t")
    fuzz_report_crash "$t" "$work/$t.log"
  fi
done
end=$(date +%s)

echo
echo "fuzz smoke: build $((built - start))s, fuzzing $((end - built))s, total $((end - start))s"
printf '%s\n' "${summaries[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz smoke: FAILED: ${failed[*]} (crash inputs under fuzz/artifacts/)"
  exit 1
fi
echo "fuzz smoke: all targets ran ${secs}s without a crash"
