#!/usr/bin/env bash
# A real Redis for the fleet tests (tests/tests/fleet.rs): Debian's redis-server, installed with
# apt when missing, run on loopback on a fresh port without persistence.
#
#   scripts/redis-server.sh install                  # apt-get update once, then install redis-server
#   scripts/redis-server.sh start --dir DIR [--port PORT]
#                                                    # install if needed, then run in the foreground;
#                                                    # prints "listening 127.0.0.1:PORT" once it
#                                                    # answers PING (port 0 = a free port)
#
# Listens on 127.0.0.1 only, without a password: never expose it.
set -euo pipefail

die() { echo "redis-server.sh: $*" >&2; exit 1; }

install() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "redis-server is missing and apt-get is not available"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Several tests may start at once: one installs, the others wait for it.
  exec 9>"/tmp/chatbox-redis-install.lock"
  flock 9
  if ! command -v redis-server >/dev/null 2>&1; then
    $sudo apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >&2 \
      || die "apt-get install redis-server failed"
  fi
  exec 9>&-
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local dir="" port=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir="$2"; shift 2 ;;
      --port) port="$2"; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [ -n "$dir" ] || die "start needs --dir DIR"
  install
  mkdir -p "$dir"
  [ "$port" != 0 ] || port="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
    --daemonize no --logfile "$dir/redis.log" &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' TERM INT
  for _ in $(seq 1 100); do
    if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
      echo "listening 127.0.0.1:$port"
      wait $pid
      exit $?
    fi
    kill -0 $pid 2>/dev/null || die "redis-server exited; see $dir/redis.log"
    sleep 0.1
  done
  kill $pid 2>/dev/null || true
  die "redis-server did not answer PING on port $port"
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  *) die "usage: redis-server.sh install | start --dir DIR [--port PORT]" ;;
esac
