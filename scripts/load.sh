#!/usr/bin/env bash
# Load scenarios of issue 7 against a release build (never run in CI; figures in BENCHMARKS.md).
#
#   scripts/load.sh run      [args]  # 1. latency vs rate: 50, 500, 2000, 5000 msg/s, 30 s each
#   scripts/load.sh idle     [args]  # 2. idle connections up to the open-file limit, bytes/connection
#   scripts/load.sh churn    [args]  # 3. 1M sessions created and ended through the TTL sweeper
#   scripts/load.sh shutdown [args]  # 4. 10 000 connections streaming, SIGTERM, what clients got
#   scripts/load.sh stub     [args]  # only the stub OpenAI upstream (for a proxy comparison)
#   scripts/load.sh floor    [args]  # scenario 1 against a bare relay process instead of chatbox:
#                                    # what two processes cost on this machine (run's args);
#                                    # FLOOR_RELAY_ARGS=--tasks gives it chatbox's task layout
#   scripts/load.sh outage   [args]  # issue 16: SecantusDB killed for 60 s under 100 msg/s of chat:
#                                    # acknowledged messages lost (read back from the store), reply
#                                    # time before/during/after, /readyz flip and recovery (~2.5 min)
#   scripts/load.sh soak     [args]  # issue 16: 500 msg/s, connections and sessions churning:
#                                    # RSS every minute, drift after the warm-up (SESSION_TTL +
#                                    # 1 min: 16 min by default) over the next 10 min (26 min
#                                    # in all by default), fds, outbox, errors
#                                    # (short smoke: soak --duration 1m --rate 50 --sample 10s)
#   scripts/load.sh instructions [args] # issue 18: CPU instructions per reply, chatbox and the
#                                    # relay, each under valgrind --tool=callgrind (perf stat
#                                    # has no instruction counter in a VM): warm-up 100, then
#                                    # 400 and 2000 messages at 40/s over 40 connections; the
#                                    # figure is (Ir2 - Ir1) / (replies2 - replies1) (~4 min)
#   scripts/load.sh fleet            # issue 14's fleet figures: two instances, SecantusDB, Redis
#                                    # (relay latency, Redis commands and memory per reply; ~40 s)
#
# Extra args go to `chatbox-load <scenario>` (see `chatbox-load <scenario> --help`), e.g.
#   scripts/load.sh run --rates 50,500 --duration 10s
#   scripts/load.sh churn --sessions 100000
#   scripts/load.sh run --server-env WS_WRITE_BUFFER_SIZE=4096
# Binaries are built into target/load (release), so test builds in target/ are left alone.
# The generator raises its open-file limit to the hard limit; the server it starts inherits it.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:?usage: scripts/load.sh run|idle|churn|shutdown|outage|soak|instructions|stub|floor|fleet [args]}"
shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/load}"
if [ "$scenario" = fleet ]; then
  # The tests crate's harness runs the chatbox binary of the same profile (target/load/release).
  echo "# $(date -u +%FT%TZ) $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  cargo build --release --locked -q -p chatbox --bin chatbox
  exec cargo test --release --locked -q -p chatbox-tests --test fleet_figures -- --ignored --nocapture
fi
cargo build --release --locked -q -p chatbox --bin chatbox
cargo build --release --locked -q -p chatbox-load
bin="$CARGO_TARGET_DIR/release"
echo "# $(date -u +%FT%TZ) $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg), nofile $(ulimit -Hn)" >&2
if [ "$scenario" = floor ]; then
  # The relay calls the run's in-process stub on a fixed port; the run measures the relay.
  stub_port="${FLOOR_STUB_PORT:-18999}"
  # FLOOR_RELAY_ARGS=--tasks: the relay with chatbox's task layout (two hops per chunk).
  # shellcheck disable=SC2086
  "$bin/chatbox-load" relay --port 0 --upstream "127.0.0.1:$stub_port" ${FLOOR_RELAY_ARGS:-} \
    >"$CARGO_TARGET_DIR/relay.out" &
  relay_pid=$!
  trap 'kill "$relay_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do grep -q '^relay listening' "$CARGO_TARGET_DIR/relay.out" && break; sleep 0.1; done
  relay_addr="$(sed -n 's/^relay listening on \([^ ]*\).*/\1/p' "$CARGO_TARGET_DIR/relay.out")"
  [ -n "$relay_addr" ] || { echo "the relay did not start" >&2; exit 1; }
  JWT_SECRET=unused "$bin/chatbox-load" --server-addr "$relay_addr" --server-pid "$relay_pid" \
    --stub-port "$stub_port" run "$@"
  exit
fi
exec "$bin/chatbox-load" --server-bin "$bin/chatbox" "$scenario" "$@"
