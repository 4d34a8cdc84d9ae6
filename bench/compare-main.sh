#!/usr/bin/env bash
# Issue 14's one comparison run: the previous main's binaries against the new ones, with
# `natter-bench compare` (natter-server: deliveries per server CPU-second at 50 and 800 msgs/s
# with 1,000 clients, p99 at 50,000 deliveries/s, the realistic scenario's p99, server memory
# per idle connection) and `natter-bench footprint` with both desktop apps (cold start to the
# first painted message of cached history, PSS with a 10,000-message conversation open).
# Prints each build's figures, the ratio new / old and whether each is within 10%.
#
# Builds nothing. Usage:
#   bench/compare-main.sh OLD_DIR NEW_DIR [extra `natter-bench compare` flags, e.g. --rounds 5]
# OLD_DIR and NEW_DIR each hold natter-server and, for the app part, natter-desktop (release
# builds; docs/benchmarks.md, "Issue 14", says how they were made). Also needed, already built:
#   natter-bench (release, from the NEW tree: its client core writes the app's profile)
#       $NATTER_BENCH, default $TARGET/release/natter-bench
#   the empty Tauri window (the footprint's reference; left out with a notice when missing)
#       $NATTER_EMPTY_WINDOW, default $TARGET/release/natter-empty-window
# with TARGET = $CARGO_TARGET_DIR or ./target. Figures go to $OUT (default $TARGET):
# compare-main.md (the tables), compare-servers.json, compare-footprint.json.
#   COMPARE_SKIP_FOOTPRINT=1   only the servers
#   COMPARE_SKIP_SERVERS=1     only the apps
# Needs taskset; the app part also Xvfb, tauri-driver and WebKitWebDriver (as scripts/bench).
# It takes the machine: run it with nothing else running (the load average is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }
fail() { echo "compare-main: $*" >&2; exit 2; }

[ $# -ge 2 ] || fail "usage: bench/compare-main.sh OLD_DIR NEW_DIR [natter-bench compare flags]"
old="$(cd "$1" && pwd)" || fail "no directory $1"
new="$(cd "$2" && pwd)" || fail "no directory $2"
shift 2

TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
bench="${NATTER_BENCH:-$TARGET/release/natter-bench}"
empty="${NATTER_EMPTY_WINDOW:-$TARGET/release/natter-empty-window}"
out="${OUT:-$TARGET}"
mkdir -p "$out"
[ -x "$bench" ] || fail "no natter-bench at $bench: cargo build --release -p natter-bench (in the new tree), or set NATTER_BENCH"

servers=1
if [ -n "${COMPARE_SKIP_SERVERS:-}" ]; then servers=""; fi
footprint=1
if [ -n "${COMPARE_SKIP_FOOTPRINT:-}" ]; then footprint=""; fi
if [ -n "$servers" ]; then
  for d in "$old" "$new"; do
    [ -x "$d/natter-server" ] || fail "no natter-server in $d"
  done
fi
if [ -n "$footprint" ]; then
  for d in "$old" "$new"; do
    [ -x "$d/natter-desktop" ] || fail "no natter-desktop in $d (COMPARE_SKIP_FOOTPRINT=1 to skip the app part)"
  done
  # The new server fills the profile (registration and first sync); the apps then run offline.
  server="$new/natter-server"
  [ -x "$server" ] || server="$old/natter-server"
  [ -x "$server" ] || fail "no natter-server in $new or $old: the app part needs one to fill the profile"
  if [ -x "$empty" ]; then
    empty_args=(--empty "$empty")
  else
    say "no empty Tauri window at $empty: the footprint leaves that reference out (cargo build --release --manifest-path bench/empty-window/Cargo.toml, or set NATTER_EMPTY_WINDOW)"
    empty_args=(--skip-empty)
  fi
  for tool in Xvfb tauri-driver WebKitWebDriver; do
    command -v "$tool" >/dev/null 2>&1 || fail "no $tool (scripts/setup --test installs it)"
  done
fi

# Idle connections go up to the per-process open-file limit: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "open-file limit $(ulimit -n), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for d in "$old" "$new"; do
  for f in natter-server natter-desktop; do
    if [ -e "$d/$f" ]; then say "$(sha256sum "$d/$f" | cut -c1-16)  $d/$f"; fi
  done
done

# Pinned as scripts/bench pins it: the server under test on CPU 0, the generator on CPU 1; as
# root, ahead of whatever else the machine is doing.
gen=()
if [ "$(nproc)" -ge 2 ]; then gen=(taskset -c 1); fi
nice_=()
if [ "$(id -u)" = 0 ]; then nice_=(nice -n -10); fi

: >"$out/compare-main.md"
started=$(date +%s)
if [ -n "$servers" ]; then
  say "natter-bench compare: old = $old/natter-server, new = $new/natter-server"
  "${nice_[@]}" "${gen[@]}" "$bench" compare \
    --server "old=$old/natter-server" \
    --server "new=$new/natter-server" \
    --server-cpus 0 \
    --json "$out/compare-servers.json" "$@" | tee -a "$out/compare-main.md"
fi
if [ -n "$footprint" ]; then
  # Not pinned: the app is a UI process plus WebKit's processes, as on a desktop.
  say "natter-bench footprint: old = $old/natter-desktop, new = $new/natter-desktop"
  "${nice_[@]}" "$bench" footprint \
    --app "old=$old/natter-desktop" \
    --app "new=$new/natter-desktop" \
    "${empty_args[@]}" \
    --natter-server "$server" \
    --json "$out/compare-footprint.json" | tee -a "$out/compare-main.md"
fi
say "done in $(( $(date +%s) - started )) s; tables in $out/compare-main.md, figures in $out/compare-*.json"
