#!/usr/bin/env bash
# End-to-end test of the built desktop app (issue 4): a real natter-server, two app instances
# (Alice and Bob, separate profiles) under Xvfb, driven through WebDriver (tauri-driver +
# WebKitWebDriver), with Bob's notifications going to a real notification daemon (dunst) on a
# private D-Bus session. The scenario itself is in scenario.mjs; this script builds, starts and
# cleans up every process, and exits non-zero on any failure.
#
#   tests/e2e/run.sh                  build (debug) and run
#   E2E_SKIP_BUILD=1 tests/e2e/run.sh reuse the last build
#   E2E_SCREENSHOTS=1 tests/e2e/run.sh also (re)write docs/screenshots/*.png
#   E2E_KEEP=1 tests/e2e/run.sh       keep the work directory (logs, profiles) for inspection
#
# Needs: xvfb, webkit2gtk-driver, dunst, dbus (dbus-run-session, dbus-monitor), xdotool, node,
# and tauri-driver (cargo install tauri-driver).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
started=$(date +%s)
say() { printf '\033[1;36me2e:\033[0m %s\n' "$*"; }

for tool in Xvfb WebKitWebDriver tauri-driver dunst dunstctl dbus-run-session dbus-monitor xdotool node; do
  command -v "$tool" >/dev/null 2>&1 || { echo "e2e: missing $tool (scripts/setup --test installs it)" >&2; exit 2; }
done

if [ -z "${E2E_SKIP_BUILD:-}" ]; then
  say "building the UI and the app (debug)"
  [ -d ui/node_modules ] || (cd ui && npm ci --no-audit --no-fund --loglevel=error)
  (cd ui && npm run build --silent)
  cargo build --quiet -p natter-desktop --bin natter-desktop
  cargo build --quiet -p natter --bin natter-server
fi
APP="$TARGET/debug/natter-desktop"
SERVER="$TARGET/debug/natter-server"
[ -x "$APP" ] && [ -x "$SERVER" ] || { echo "e2e: $APP or $SERVER not built" >&2; exit 2; }

WORK="$(mktemp -d /tmp/natter-e2e.XXXXXX)"
PGIDS=()
cleanup() {
  local rc=$?
  for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  sleep 0.5
  for pg in "${PGIDS[@]}"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    say "FAILED (exit $rc); logs:"
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "----- $f (last 40 lines)"; tail -n 40 "$f"; }; done
  fi
  if [ -n "${E2E_KEEP:-}" ]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in its own process group (so cleanup ends it and all its children by group id).
spawn() {
  local log="$1"; shift
  setsid "$@" >"$log" 2>&1 < /dev/null &
  PGIDS+=("$!")
}

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local until=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$until" ] || { echo "e2e: timed out waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}

SERVER_PORT=$(free_port)
say "natter-server on 127.0.0.1:$SERVER_PORT"
spawn "$WORK/server.log" "$SERVER" --listen "127.0.0.1:$SERVER_PORT" --data-dir "$WORK/server"
wait_for 20 "the server" node -e "fetch('http://127.0.0.1:$SERVER_PORT/api/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"

# One X display per user: each window is alone on its screen, so keyboard focus (which drives
# the notification policy) is unambiguous without a window manager.
pick_display() { local n; for n in $(seq "$1" $(( $1 + 50 ))); do [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ] || { echo "$n"; return; }; done; return 1; }
# One after the other: on a machine where /tmp/.X11-unix does not exist yet, two X servers
# starting together race to create it, and the loser gives up ("Cannot create /tmp/.X11-unix").
ALICE_DISPLAY=$(pick_display 91)
spawn "$WORK/xvfb-alice.log" Xvfb ":$ALICE_DISPLAY" -screen 0 1280x800x24 -nolisten tcp
wait_for 10 "Xvfb" test -e "/tmp/.X11-unix/X$ALICE_DISPLAY"
BOB_DISPLAY=$(pick_display $(( ALICE_DISPLAY + 1 )))
spawn "$WORK/xvfb-bob.log" Xvfb ":$BOB_DISPLAY" -screen 0 1280x800x24 -nolisten tcp
wait_for 10 "Xvfb" test -e "/tmp/.X11-unix/X$BOB_DISPLAY"

# Each user gets a private D-Bus session (tests/e2e/session.sh): Bob's has dunst and a
# dbus-monitor recording every Notify call.
ALICE_PORT=$(free_port); ALICE_NATIVE=$(free_port)
BOB_PORT=$(free_port); BOB_NATIVE=$(free_port)
mkdir -p "$WORK/alice" "$WORK/bob"
export RUST_LOG="${RUST_LOG:-info,natter=debug,natter_desktop=debug}"
spawn "$WORK/alice.log" env DISPLAY=":$ALICE_DISPLAY" NATTER_DATA_DIR="$WORK/alice/profile" NATTER_LOG_FILE="$WORK/alice-app.log" \
  dbus-run-session -- bash tests/e2e/session.sh "$WORK/alice" "$ALICE_PORT" "$ALICE_NATIVE" no-dunst
spawn "$WORK/bob.log" env DISPLAY=":$BOB_DISPLAY" NATTER_DATA_DIR="$WORK/bob/profile" NATTER_LOG_FILE="$WORK/bob-app.log" \
  dbus-run-session -- bash tests/e2e/session.sh "$WORK/bob" "$BOB_PORT" "$BOB_NATIVE" dunst
wait_for 20 "Alice's tauri-driver" test -e "$WORK/alice/ready"
wait_for 20 "Bob's tauri-driver and dunst" test -e "$WORK/bob/ready"

say "running the scenario"
# The scenario is also Bob's other device, a WebSocket client: Node 20 has WebSocket behind a flag.
NODE_WEBSOCKET=""
node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' || NODE_WEBSOCKET="--experimental-websocket"
SCREENSHOTS=""
[ -n "${E2E_SCREENSHOTS:-}" ] && SCREENSHOTS="$ROOT/docs/screenshots"
E2E_APP="$APP" E2E_SERVER="http://127.0.0.1:$SERVER_PORT" \
  E2E_ALICE_DRIVER="http://127.0.0.1:$ALICE_PORT" E2E_BOB_DRIVER="http://127.0.0.1:$BOB_PORT" \
  E2E_ALICE_DISPLAY=":$ALICE_DISPLAY" E2E_BOB_DISPLAY=":$BOB_DISPLAY" \
  E2E_BOB_BUS="$(cat "$WORK/bob/bus")" E2E_BOB_MONITOR="$WORK/bob/notify-monitor.log" \
  E2E_BOB_PROFILE="$WORK/bob/profile" \
  E2E_SCREENSHOTS="$SCREENSHOTS" E2E_WORK="$WORK" \
  node $NODE_WEBSOCKET tests/e2e/scenario.mjs

say "passed in $(( $(date +%s) - started )) s"
