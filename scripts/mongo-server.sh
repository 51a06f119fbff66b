#!/usr/bin/env bash
# A real MongoDB-wire-compatible server for the MongoDB store tests (shell/tests/mongo_store.rs):
# SecantusDB from PyPI (a single-node replica set on WiredTiger) in a venv outside the clone.
#
#   scripts/mongo-server.sh install                 # create the venv once (skipped when present)
#   scripts/mongo-server.sh start --dir DIR [--port PORT] [--exit-with PID] [--remove-dir] [--durable]
#                                                   # install if needed, then run in the foreground;
#                                                   # prints "listening 127.0.0.1:PORT" once the
#                                                   # port accepts connections (port 0 = free port);
#                                                   # --exit-with: stop when process PID is gone
#                                                   # (a test binary); --remove-dir: then delete DIR;
#                                                   # --durable: fsync every commit, so a SIGKILL
#                                                   # loses no acknowledged write (outage tests)
#   scripts/mongo-server.sh python                  # print the venv's python path
#
# The venv lives in ${CHATBOX_TOOLS:-$HOME/.cache/chatbox-tools}/secantus-venv. Needs python3 with
# the venv module; fails with a clear message otherwise. The server listens on 127.0.0.1 only,
# without authentication, with test commands (configureFailPoint) enabled: never expose it.
set -euo pipefail

SECANTUS_VERSION="0.7.0b3"
tools="${CHATBOX_TOOLS:-${HOME:-/tmp}/.cache/chatbox-tools}"
venv="$tools/secantus-venv"
py="$venv/bin/python"
server="$venv/bin/secantusd-py"

die() { echo "mongo-server.sh: $*" >&2; exit 1; }

ready() { [ -x "$server" ] && [ -x "$py" ]; }

install() {
  ready && return 0
  mkdir -p "$tools"
  # Tests start several servers at once: one installs, the others wait for it.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools/secantus-venv.lock"
    flock 9
    ready && { exec 9>&-; return 0; }
  fi
  command -v python3 >/dev/null 2>&1 \
    || die "python3 not found; install Python 3.10+ (e.g. apt-get install python3 python3-venv)"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 \
    || die "python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv)"
  "$py" -m pip install --quiet --disable-pip-version-check "SecantusDB==$SECANTUS_VERSION" >&2 \
    || die "pip could not install SecantusDB==$SECANTUS_VERSION from PyPI"
  [ -x "$server" ] || die "SecantusDB installed but $server is missing"
  exec 9>&-
}

# A free loopback port (the kernel picks it; a tiny race with other processes is accepted).
free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Succeeds once 127.0.0.1:$1 accepts a TCP connection.
accepts() {
  "$py" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$1" \
    2>/dev/null
}

start() {
  local dir="" port=0 exit_with="" remove_dir=0
  local durable=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir="${2:-}"; shift 2 ;;
      --port) port="${2:-}"; shift 2 ;;
      --exit-with) exit_with="${2:-}"; shift 2 ;;
      --remove-dir) remove_dir=1; shift ;;
      --durable) durable=(--sync-on-commit); shift ;;
      *) die "unknown option $1 (expected --dir DIR [--port PORT] [--exit-with PID] [--remove-dir])" ;;
    esac
  done
  [ -n "$dir" ] || die "start needs --dir DIR"
  mkdir -p "$dir"
  [ "$port" = 0 ] && port="$(free_port)"

  # A watcher prints the readiness line once the port accepts connections (or gives up when
  # the server is gone or 60 s pass); the server then replaces this shell (`exec`), so the
  # caller's child *is* the server and killing that pid stops it.
  local server_pid=$$
  (
    for _ in $(seq 600); do
      kill -0 "$server_pid" 2>/dev/null || exit 0
      if accepts "$port"; then echo "listening 127.0.0.1:$port"; exit 0; fi
      sleep 0.1
    done
    echo "mongo-server.sh: secantusd-py did not listen on port $port within 60 s" >&2
  ) &
  # Stops the server once the owner process is gone (a test binary cannot run destructors for
  # its statics), then removes the data directory if asked to. Its output goes nowhere, so it
  # does not hold the caller's pipes open.
  if [ -n "$exit_with" ]; then
    (
      while kill -0 "$exit_with" 2>/dev/null && kill -0 "$server_pid" 2>/dev/null; do sleep 1; done
      kill -TERM "$server_pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$server_pid" 2>/dev/null || true
      if [ "$remove_dir" = 1 ]; then sleep 0.5; rm -rf -- "$dir"; fi
    ) </dev/null >/dev/null 2>&1 &
  elif [ "$remove_dir" = 1 ]; then
    die "--remove-dir needs --exit-with PID"
  fi
  exec "$server" --host 127.0.0.1 --port "$port" --storage-path "$dir" --enable-test-commands \
    --log-level WARNING "${durable[@]}" >&2
}

case "${1:-}" in
  install)
    install
    echo "SecantusDB ready in $venv" >&2
    ;;
  start)
    shift
    install
    start "$@"
    ;;
  python)
    install
    echo "$py"
    ;;
  *)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
