#!/usr/bin/env bash
# A real S3-compatible server for the upload tests (tests/tests/uploads.rs) and the upload
# throughput figure: moto's server mode from PyPI in a venv outside the clone.
#
#   scripts/s3-server.sh install                    # create the venv once (skipped when present)
#   scripts/s3-server.sh start [--port PORT] [--host HOST] [--exit-with PID]
#                                                   # install if needed, then run in the foreground;
#                                                   # prints "listening HOST:PORT" (port 0 = free);
#                                                   # exits when process PID is gone
#   scripts/s3-server.sh python                     # print the venv's python path
#
# The venv lives in ${CHATBOX_TOOLS:-$HOME/.cache/chatbox-tools}/s3-venv. moto accepts any
# credentials; buckets are created by the client (the tests create theirs). Needs python3 with
# the venv module; fails with a clear message otherwise.
set -euo pipefail

MOTO_VERSION="5.1.18"
tools="${CHATBOX_TOOLS:-${HOME:-/tmp}/.cache/chatbox-tools}"
venv="$tools/s3-venv"
py="$venv/bin/python"

die() { echo "s3-server.sh: $*" >&2; exit 1; }

ready() { [ -x "$py" ] && "$py" -c 'import moto.server, flask_cors' 2>/dev/null; }

install() {
  ready && return 0
  mkdir -p "$tools"
  # Tests start several servers at once: one installs, the others wait for it.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools/s3-venv.lock"
    flock 9
    ready && { exec 9>&-; return 0; }
  fi
  command -v python3 >/dev/null 2>&1 \
    || die "python3 not found; install Python 3.9+ (e.g. apt-get install python3 python3-venv)"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 \
    || die "python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv)"
  "$py" -m pip install --quiet --disable-pip-version-check "moto[server,s3]==$MOTO_VERSION" >&2 \
    || die "pip could not install moto[server,s3]==$MOTO_VERSION from PyPI"
  ready || die "moto installed but cannot be imported"
  exec 9>&-
}

start() {
  local host=127.0.0.1 port=0 exit_with=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --host) host="$2"; shift 2 ;;
      --port) port="$2"; shift 2 ;;
      --exit-with) exit_with="$2"; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  install
  exec "$py" -u - "$host" "$port" "$exit_with" <<'PY'
import os, socket, sys, time
from moto.server import ThreadedMotoServer

host, port, exit_with = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if port == 0:
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
server.start()
print(f"listening {host}:{port}", flush=True)
try:
    while True:
        time.sleep(0.5)
        if exit_with:
            try:
                os.kill(int(exit_with), 0)
            except OSError:
                break
except KeyboardInterrupt:
    pass
server.stop()
PY
}

case "${1:-}" in
  install)
    install
    echo "moto ready in $venv" >&2
    ;;
  start)
    shift
    start "$@"
    ;;
  python)
    install
    echo "$py"
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
