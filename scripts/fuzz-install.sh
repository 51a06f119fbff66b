#!/usr/bin/env bash
# Installs what the fuzz scripts need. They build with plain `cargo` on stable Rust (no
# cargo-fuzz, no nightly; fuzz/README.md says why), so the only system requirement is a C++
# compiler for libfuzzer-sys, which compiles libFuzzer from source. This script checks for one,
# installs Debian's g++ if it is missing (root only), and pre-fetches the fuzz crate's
# dependencies. With --cargo-fuzz it also installs cargo-fuzz (for developers who have a nightly
# toolchain and want `cargo +nightly fuzz run ...`) into ${CHATBOX_TOOLS:-~/.cache/chatbox-tools},
# outside the clone, skipping it when already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v c++ >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing g++ (libfuzzer-sys compiles libFuzzer)"
    apt-get update -qq && apt-get install -y -qq g++
  else
    echo "fuzz-install: no C++ compiler found; install g++ or clang++" >&2
    exit 1
  fi
fi
echo "==> C++ compiler: $(c++ --version | head -n 1)"

echo "==> fetching the fuzz crate's dependencies"
cargo fetch --manifest-path fuzz/Cargo.toml

if [ "${1:-}" = "--cargo-fuzz" ]; then
  tools="${CHATBOX_TOOLS:-$HOME/.cache/chatbox-tools}"
  if [ -x "$tools/bin/cargo-fuzz" ]; then
    echo "==> cargo-fuzz already in $tools/bin"
  else
    echo "==> installing cargo-fuzz into $tools"
    cargo install cargo-fuzz --locked --root "$tools"
  fi
  echo "add $tools/bin to PATH to use it (it still needs a nightly toolchain for its default sanitizer)"
fi
echo "fuzz-install: ready"
