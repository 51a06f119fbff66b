#!/usr/bin/env bash
# Compares the latency chatbox and LiteLLM add to time-to-first-chunk, in one run, against the
# same stub OpenAI upstream, at the same open-loop rates (optional; never run in CI).
#
#   scripts/litellm-compare.sh [rates] [duration]     # defaults: 10,30,60 and 30s
#
# Installs LiteLLM once into ${CHATBOX_TOOLS:-~/.cache/chatbox-tools}/litellm (a venv, from
# PyPI), writes a proxy config whose one model calls the stub at 127.0.0.1:$STUB_PORT, starts
# `litellm --num_workers 1`, then runs `chatbox-load run --target http` against LiteLLM and
# `chatbox-load run` against chatbox (started by chatbox-load), each with its own stub on that
# port. Results: the `RESULT` lines of both runs (added latency, RSS of each server).
set -euo pipefail
cd "$(dirname "$0")/.."
rates="${1:-10,30,60}"
duration="${2:-30s}"
tools="${CHATBOX_TOOLS:-$HOME/.cache/chatbox-tools}"
venv="$tools/litellm"
STUB_PORT="${STUB_PORT:-18555}"
LITELLM_PORT="${LITELLM_PORT:-18556}"
if [ ! -x "$venv/bin/litellm" ]; then
    mkdir -p "$tools"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'litellm[proxy]==1.108.7'
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/load}"
cargo build --release --locked -q -p chatbox --bin chatbox -p chatbox-load
bin="$CARGO_TARGET_DIR/release"
work="$(mktemp -d)"
cleanup() { [ -n "${litellm_pid:-}" ] && kill "$litellm_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cat > "$work/litellm.yaml" <<YAML
model_list:
  - model_name: stub
    litellm_params:
      model: openai/stub
      api_base: http://127.0.0.1:${STUB_PORT}/v1
      api_key: sk-stub-0123456789
litellm_settings:
  drop_params: true
  telemetry: false
YAML
# The proxy refuses to start without a master key; requests carry it as their bearer key.
master_key="sk-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
# No network at start-up (the bundled model cost map), no per-request logging.
LITELLM_MASTER_KEY="$master_key" LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
    "$venv/bin/litellm" --config "$work/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" \
    --num_workers 1 > "$work/litellm.log" 2>&1 &
litellm_pid=$!
for _ in $(seq 1 120); do
    curl -fs "http://127.0.0.1:$LITELLM_PORT/health/liveliness" > /dev/null 2>&1 && break
    kill -0 "$litellm_pid" 2>/dev/null || { cat "$work/litellm.log"; exit 1; }
    sleep 1
done
echo "# LiteLLM $("$venv/bin/pip" show litellm 2>/dev/null | sed -n 's/^Version: //p') pid $litellm_pid on :$LITELLM_PORT; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## LiteLLM"
"$bin/chatbox-load" run --target http --url "http://127.0.0.1:$LITELLM_PORT" --model stub \
    --api-key "$master_key" \
    --stub-port "$STUB_PORT" --server-pid "$litellm_pid" --rates "$rates" --duration "$duration"
echo "## chatbox"
"$bin/chatbox-load" --server-bin "$bin/chatbox" run --stub-port "$STUB_PORT" \
    --rates "$rates" --duration "$duration"
