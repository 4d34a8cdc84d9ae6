#!/usr/bin/env bash
# Runs inside a private D-Bus session (dbus-run-session) for one user of the e2e test: optionally
# dunst as the notification daemon plus a dbus-monitor log of Notify calls, then tauri-driver.
# Writes DIR/bus (the bus address, for dunstctl) and DIR/ready once all of it is up.
#   session.sh DIR PORT NATIVE_PORT dunst|no-dunst
set -euo pipefail
dir=$1 port=$2 native=$3 mode=$4
echo "$DBUS_SESSION_BUS_ADDRESS" > "$dir/bus"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
if [ "$mode" = dunst ]; then
  dbus-monitor --session "type='method_call',interface='org.freedesktop.Notifications',member='Notify'" \
    > "$dir/notify-monitor.log" 2>&1 &
  pids+=($!)
  dunst -config "$(dirname "$0")/dunstrc" > "$dir/dunst.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do dunstctl is-paused >/dev/null 2>&1 && break; sleep 0.1; done
  dunstctl is-paused >/dev/null
fi
tauri-driver --port "$port" --native-port "$native" > "$dir/tauri-driver.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  node -e "fetch('http://127.0.0.1:$port/status').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" 2>/dev/null && break
  sleep 0.1
done
touch "$dir/ready"
wait "${pids[-1]}"
