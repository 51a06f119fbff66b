#!/usr/bin/env bash
# Load scenarios of issue 7 against a release build (never run in CI; figures in BENCHMARKS.md).
#
#   scripts/load.sh run      [args]  # 1. latency vs rate: 50, 500, 2000, 5000 msg/s, 30 s each
#   scripts/load.sh idle     [args]  # 2. idle connections up to the open-file limit, bytes/connection
#   scripts/load.sh churn    [args]  # 3. 1M sessions created and ended through the TTL sweeper
#   scripts/load.sh shutdown [args]  # 4. 10 000 connections streaming, SIGTERM, what clients got
#   scripts/load.sh stub     [args]  # only the stub OpenAI upstream (for a proxy comparison)
#
# Extra args go to `chatbox-load <scenario>` (see `chatbox-load <scenario> --help`), e.g.
#   scripts/load.sh run --rates 50,500 --duration 10s
#   scripts/load.sh churn --sessions 100000
#   scripts/load.sh run --server-env WS_WRITE_BUFFER_SIZE=4096
# Binaries are built into target/load (release), so test builds in target/ are left alone.
# The generator raises its open-file limit to the hard limit; the server it starts inherits it.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:?usage: scripts/load.sh run|idle|churn|shutdown|stub [args]}"
shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/load}"
cargo build --release --locked -q -p chatbox --bin chatbox -p chatbox-load
bin="$CARGO_TARGET_DIR/release"
echo "# $(date -u +%FT%TZ) $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg), nofile $(ulimit -Hn)" >&2
exec "$bin/chatbox-load" --server-bin "$bin/chatbox" "$scenario" "$@"
