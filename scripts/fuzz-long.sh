#!/usr/bin/env bash
# Long fuzzing run: like scripts/fuzz-smoke.sh, but each target runs for SECONDS (default 600)
# and the corpus it grows is kept in fuzz/corpus-local/<target>/ (gitignored), so successive
# runs continue where the last one stopped. The committed corpus is read as well, never written.
# Crash inputs go to fuzz/artifacts/<target>/; logs to fuzz/corpus-local/<target>.log.
#
#   scripts/fuzz-long.sh [SECONDS]
#   FUZZ_TARGETS="jwt_verify" FUZZ_FORK=2 scripts/fuzz-long.sh 3600   # two processes
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../fuzz/fuzz-lib.sh
source fuzz/fuzz-lib.sh

secs="${1:-600}"
fuzz_build

failed=()
summaries=()
for t in $(fuzz_targets); do
  mkdir -p "fuzz/corpus-local/$t"
  log="fuzz/corpus-local/$t.log"
  echo "==> fuzzing $t for ${secs}s (corpus fuzz/corpus-local/$t, log $log)"
  status=0
  fuzz_run "$t" "$secs" "$log" "fuzz/corpus-local/$t" "fuzz/corpus/$t" || status=$?
  summaries+=("$(fuzz_summary "$t" "$log" "$status")")
  if [ "$status" != 0 ]; then
    failed+=("$t")
    fuzz_report_crash "$t" "$log"
  fi
done

echo
printf '%s\n' "${summaries[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz long: FAILED: ${failed[*]} (crash inputs under fuzz/artifacts/)"
  exit 1
fi
echo "fuzz long: all targets ran ${secs}s without a crash"
