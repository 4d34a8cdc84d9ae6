/**
 * Emits an app event the way the Rust side does (docs/ipc.md "Events"): on the one channel,
 * naming itself; the window's own `tauri://` events go out under their own name.
 */
import { emit } from "@tauri-apps/api/event";
import { EVENT_CHANNEL } from "../api";

export async function emitAppEvent(event: string, payload: unknown): Promise<void> {
  if (event.startsWith("tauri://")) await emit(event, payload);
  else await emit(EVENT_CHANNEL, { event, payload });
}
