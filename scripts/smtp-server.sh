#!/usr/bin/env bash
# A real SMTP server for the alert tests (tests/tests/alerts.rs): aiosmtpd from PyPI in a venv
# outside the clone, plus scripts/smtp_sink.py, which writes each received message to a directory.
#
#   scripts/smtp-server.sh install                  # create the venv once (skipped when present)
#   scripts/smtp-server.sh start --dir DIR [--port PORT] [--host HOST] [--auth USER:PASSWORD]
#                                                   # install if needed, then run in the foreground;
#                                                   # prints "listening HOST:PORT" (port 0 = free)
#   scripts/smtp-server.sh python                   # print the venv's python path
#
# The venv lives in ${CHATBOX_TOOLS:-$HOME/.cache/chatbox-tools}/smtp-venv. Needs python3 with
# the venv module; fails with a clear message otherwise.
set -euo pipefail

AIOSMTPD_VERSION="1.4.6"
here="$(cd "$(dirname "$0")" && pwd)"
tools="${CHATBOX_TOOLS:-${HOME:-/tmp}/.cache/chatbox-tools}"
venv="$tools/smtp-venv"
py="$venv/bin/python"

die() { echo "smtp-server.sh: $*" >&2; exit 1; }

ready() { [ -x "$py" ] && "$py" -c 'import aiosmtpd' 2>/dev/null; }

install() {
  ready && return 0
  mkdir -p "$tools"
  # Tests start several servers at once: one installs, the others wait for it.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools/smtp-venv.lock"
    flock 9
    ready && { exec 9>&-; return 0; }
  fi
  command -v python3 >/dev/null 2>&1 \
    || die "python3 not found; install Python 3.8+ (e.g. apt-get install python3 python3-venv)"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 \
    || die "python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv)"
  "$py" -m pip install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION" >&2 \
    || die "pip could not install aiosmtpd==$AIOSMTPD_VERSION from PyPI"
  "$py" -c 'import aiosmtpd' || die "aiosmtpd installed but cannot be imported"
  exec 9>&-
}

case "${1:-}" in
  install)
    install
    echo "aiosmtpd ready in $venv" >&2
    ;;
  start)
    shift
    install
    exec "$py" -u "$here/smtp_sink.py" "$@"
    ;;
  python)
    install
    echo "$py"
    ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
