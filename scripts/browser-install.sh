#!/usr/bin/env bash
# What the real-browser tests (tests/browser/, run by scripts/browser-tests.sh) need:
#   - Debian's Chromium at /usr/bin/chromium (apt-get; Playwright cannot download browsers here),
#   - playwright-core and axe-core from npm, at the exact versions locked in
#     tests/browser/package-lock.json, installed with `npm ci` into a cache outside the clone.
#
#   scripts/browser-install.sh            # install what is missing (idempotent; fast when done)
#   scripts/browser-install.sh --print    # also print the node_modules directory on stdout
#
# The npm packages live in ${CHATBOX_TOOLS:-$HOME/.cache/chatbox-tools}/browser/node_modules; the
# tests find them there (tests/browser/harness.js looks there, NODE_PATH is set by
# browser-tests.sh). Needs node >= 20 and npm. Installing Chromium needs root (or sudo).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
spec="$here/tests/browser"
tools="${CHATBOX_TOOLS:-${HOME:-/tmp}/.cache/chatbox-tools}"
cache="$tools/browser"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"

die() { echo "browser-install.sh: $*" >&2; exit 1; }

print=0
case "${1:-}" in
  "") ;;
  --print) print=1 ;;
  *) die "unknown option $1 (expected nothing or --print)" ;;
esac

install_chromium() {
  [ -x "$chromium" ] && return 0
  local run=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 \
      || die "$chromium is missing and this is not root (no sudo either): apt-get install chromium"
    run=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || die "$chromium is missing and apt-get is not available"
  echo "browser-install.sh: installing Debian's chromium" >&2
  local packages=(chromium fonts-liberation)
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have empty package lists: update only when the first try fails.
  if ! "${run[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >&2; then
    "${run[@]}" apt-get update -q >&2 || die "apt-get update failed"
    "${run[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >&2 \
      || die "apt-get install chromium failed"
  fi
  [ -x "$chromium" ] || die "chromium installed but $chromium is missing"
}

# The cache is current when it holds the very lock file of the clone and the package it names.
npm_ready() {
  [ -f "$cache/node_modules/playwright-core/package.json" ] \
    && [ -f "$cache/node_modules/axe-core/axe.min.js" ] \
    && [ -f "$cache/.installed-lock.json" ] \
    && cmp -s "$cache/.installed-lock.json" "$spec/package-lock.json"
}

install_npm() {
  npm_ready && return 0
  command -v node >/dev/null 2>&1 || die "node not found (Node 20 or newer is needed)"
  command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install npm)"
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$major" -ge 20 ] || die "node $(node --version) is too old (20 or newer is needed)"
  mkdir -p "$cache"
  # Two runs at once: one installs, the other waits for it.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache.lock"
    flock 9
    npm_ready && { exec 9>&-; return 0; }
  fi
  echo "browser-install.sh: npm ci playwright-core and axe-core into $cache" >&2
  rm -rf "$cache/node_modules" "$cache/.installed-lock.json"
  cp "$spec/package.json" "$spec/package-lock.json" "$cache/"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$cache" --ignore-scripts --no-audit \
    --no-fund --loglevel=error >&2 || die "npm ci (playwright-core) failed"
  [ -f "$cache/node_modules/playwright-core/package.json" ] \
    || die "npm ci finished but playwright-core is missing in $cache/node_modules"
  [ -f "$cache/node_modules/axe-core/axe.min.js" ] \
    || die "npm ci finished but axe-core is missing in $cache/node_modules"
  cp "$spec/package-lock.json" "$cache/.installed-lock.json"
  if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
}

install_chromium
install_npm
if [ "$print" = 1 ]; then
  echo "$cache/node_modules"
fi
