#!/usr/bin/env bash
# Packaging test: builds the .deb with the documented command (docs/desktop.md), checks what it
# installs, then unpacks it into a temporary root and launches the packaged binary under Xvfb,
# passing when its window appears and it is still running. Unpacking (dpkg-deb -x) rather than
# `dpkg -i` keeps the test from changing the machine it runs on.
#
#   tests/e2e/package.sh                 build the .deb (release) and test it
#   PACKAGE_SKIP_BUILD=1 tests/e2e/package.sh   reuse the last .deb
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
say() { printf '\033[1;36mpackage:\033[0m %s\n' "$*"; }
fail() { echo "package: $*" >&2; exit 1; }

for tool in Xvfb xdotool dpkg-deb node; do
  command -v "$tool" >/dev/null 2>&1 || { echo "package: missing $tool (scripts/setup --test installs it)" >&2; exit 2; }
done

if [ -z "${PACKAGE_SKIP_BUILD:-}" ]; then
  say "building the .deb (release)"
  [ -d ui/node_modules ] || (cd ui && npm ci --no-audit --no-fund --loglevel=error)
  TAURI_FRONTEND_PATH=ui TAURI_APP_PATH=src-tauri npx --prefix ui tauri build --bundles deb
fi
deb=$(ls -t "$TARGET"/release/bundle/deb/*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || fail "no .deb under $TARGET/release/bundle/deb"
say "checking $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

[ "$(dpkg-deb -f "$deb" Package)" = "natter" ] || fail "package name is not natter"
depends=$(dpkg-deb -f "$deb" Depends)
echo "$depends" | grep -q libwebkit2gtk-4.1 || fail "Depends lacks libwebkit2gtk-4.1: $depends"
contents=$(dpkg-deb -c "$deb")
for path in usr/bin/natter-desktop usr/share/applications/Natter.desktop \
  usr/share/icons/hicolor/128x128/apps/natter-desktop.png; do
  echo "$contents" | grep -Eq " (\./)?$path\$" || fail "the package does not install /$path"
done

WORK="$(mktemp -d /tmp/natter-package.XXXXXX)"
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ] && [ -f "$WORK/app.log" ]; then tail -n 40 "$WORK/app.log"; fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

dpkg-deb -x "$deb" "$WORK/root"
grep -q '^Exec=natter-desktop' "$WORK/root/usr/share/applications/Natter.desktop" ||
  fail "Natter.desktop does not start natter-desktop"

display=":$(( 90 + RANDOM % 100 ))"
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
pids+=("$!")
sleep 1
say "launching the packaged binary on $display"
DISPLAY="$display" NATTER_DATA_DIR="$WORK/data" "$WORK/root/usr/bin/natter-desktop" \
  >"$WORK/app.log" 2>&1 &
app=$!
pids+=("$app")

window=""
for _ in $(seq 1 60); do
  window=$(DISPLAY="$display" xdotool search --name '^Natter( \(.*\))?$' 2>/dev/null | head -n 1 || true)
  [ -n "$window" ] && break
  kill -0 "$app" 2>/dev/null || fail "the packaged app exited early"
  sleep 0.5
done
[ -n "$window" ] || fail "no Natter window appeared within 30 s"
sleep 2
kill -0 "$app" 2>/dev/null || fail "the packaged app exited after opening its window"
say "passed: the packaged app opened its window ($(DISPLAY="$display" xdotool getwindowname "$window"))"
