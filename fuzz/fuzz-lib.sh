# Shared by scripts/fuzz-smoke.sh and scripts/fuzz-long.sh (sourced, not run). Builds the
# libFuzzer targets with stable Rust and runs them; fuzz/README.md explains why it is done this
# way instead of with `cargo fuzz`.
#
# Environment:
#   FUZZ_TARGETS   space-separated targets to run (default: all four)
#   FUZZ_LOCKED=1  build with --locked (fuzz/Cargo.lock must be up to date)
#   FUZZ_FORK=N    run each target with libFuzzer's -fork=N (N processes; default: one process)
#   FUZZ_ARGS      extra libFuzzer flags for every run

FUZZ_ALL_TARGETS="frame_parser config_loader jwt_verify core_ops bus_message"
FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FUZZ_HOST="$(rustc -vV | sed -n 's/^host: //p')"
FUZZ_BIN_DIR="$FUZZ_DIR/target/$FUZZ_HOST/release"

# The instrumentation cargo-fuzz asks rustc for, minus `-Zsanitizer` (nightly only): SanitizerCoverage
# with 8-bit edge counters, the PC table, comparison tracing and stack-depth tracing, plus the
# `fuzzing` cfg. Every flag here is stable.
FUZZ_RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing"

# Largest input per target (frames go past the 10 000-byte content limit).
fuzz_max_len() {
  case "$1" in
    frame_parser) echo 24000 ;;
    *) echo 4096 ;;
  esac
}

fuzz_targets() {
  echo "${FUZZ_TARGETS:-$FUZZ_ALL_TARGETS}"
}

# Builds every target into fuzz/target/<host>/release/. `--target` matters: with it, RUSTFLAGS
# apply to the target crates only, not to build scripts and proc macros (which would otherwise
# fail to link: they do not contain libFuzzer's coverage callbacks).
fuzz_build() {
  command -v c++ >/dev/null 2>&1 || {
    echo "fuzz: no C++ compiler (libfuzzer-sys compiles libFuzzer); run scripts/fuzz-install.sh" >&2
    return 1
  }
  local locked=()
  if [ "${FUZZ_LOCKED:-0}" = 1 ]; then locked=(--locked); fi
  local bins=()
  for t in $(fuzz_targets); do bins+=(--bin "$t"); done
  echo "==> building fuzz targets ($(fuzz_targets)) for $FUZZ_HOST"
  RUSTFLAGS="$FUZZ_RUSTFLAGS" CARGO_TARGET_DIR="$FUZZ_DIR/target" \
    cargo build --manifest-path "$FUZZ_DIR/Cargo.toml" --release "${locked[@]}" \
    --target "$FUZZ_HOST" "${bins[@]}"
}

# fuzz_run TARGET SECONDS LOG CORPUS_DIR [MORE_CORPUS_DIRS...]
# Runs one target; new inputs go to CORPUS_DIR (libFuzzer writes to the first directory only).
# Crash inputs go to $FUZZ_ARTIFACTS/<target>/ (default fuzz/artifacts/, gitignored).
# Returns libFuzzer's exit status (0 = no crash, leak, timeout or OOM).
fuzz_run() {
  local target="$1" secs="$2" log="$3"
  shift 3
  local artifacts="${FUZZ_ARTIFACTS:-$FUZZ_DIR/artifacts}/$target"
  mkdir -p "$artifacts" "$1"
  local dict=()
  if [ -f "$FUZZ_DIR/dict/$target.dict" ]; then dict=("-dict=$FUZZ_DIR/dict/$target.dict"); fi
  local fork=()
  if [ "${FUZZ_FORK:-1}" -gt 1 ]; then fork=("-fork=$FUZZ_FORK"); fi
  # shellcheck disable=SC2086
  "$FUZZ_BIN_DIR/$target" \
    -max_total_time="$secs" \
    -max_len="$(fuzz_max_len "$target")" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1 \
    -artifact_prefix="$artifacts/" \
    "${dict[@]}" "${fork[@]}" ${FUZZ_ARGS:-} \
    "$@" >"$log" 2>&1
}

# fuzz_summary TARGET LOG STATUS: one line per target (runs, execs/s, coverage, corpus).
fuzz_summary() {
  local target="$1" log="$2" status="$3"
  local runs execs cov ft corp
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  execs="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  corp="$(grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)"
  local initcov
  initcov="$(grep -E 'INITED' "$log" | grep -o 'cov: [0-9]*' | head -1 | cut -d' ' -f2)"
  printf '%-14s %-7s runs=%-10s execs/s=%-7s cov=%s->%s ft=%s corpus=%s\n' \
    "$target" "$([ "$status" = 0 ] && echo ok || echo FAILED)" "${runs:-?}" "${execs:-?}" \
    "${initcov:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
}

# fuzz_report_crash TARGET LOG: prints the panic and the crashing input of a failed run.
fuzz_report_crash() {
  local target="$1" log="$2"
  echo "---- $target: last lines of $log"
  tail -n 40 "$log"
  local file
  for file in $(grep -o "Test unit written to [^ ]*" "$log" | awk '{print $5}'); do
    echo "---- crashing input $file ($(wc -c <"$file") bytes), as an escaped string:"
    od -An -c "$file" | head -n 40
    echo "---- replay: $FUZZ_BIN_DIR/$target $file"
  done
}
