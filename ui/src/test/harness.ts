/**
 * Test harness: a FakeBackend behind Tauri's real `mockIPC` (event mocking on), a fresh store,
 * and helpers to render the app and emit backend events.
 */
import { mockIPC } from "@tauri-apps/api/mocks";
import { emitAppEvent } from "../mock/events";
import { render, screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { FakeBackend } from "../mock/fake";
import { resetStore, type Store } from "../lib/store.svelte";
import { setLanguage } from "../lib/i18n.svelte";
import type { AppState } from "../types";
import App from "../App.svelte";

export function installFake(init: Partial<AppState> = {}): FakeBackend {
  const fake = new FakeBackend((event, payload) => void emitAppEvent(event, payload), init);
  mockIPC((cmd, args) => fake.handle(cmd, (args ?? {}) as Record<string, unknown>), {
    shouldMockEvents: true,
  });
  return fake;
}

/** A signed-in alice with bob and carol, a `general` room and a DM with bob. */
export function teamFake(): FakeBackend {
  const fake = installFake({ server_url: "http://127.0.0.1:8686" });
  fake.addUser("alice", "Alice", "🦊", true);
  fake.addUser("bob", "Bob", "🐼", true);
  fake.addUser("carol", "Carol", "🦉", false);
  fake.state.phase = "ready";
  fake.state.user = fake.users.get("alice")!.user;
  fake.state.connection = { state: "online" };
  return fake;
}

/** Makes `cmd` wait for `release()` before `fake` answers it (a slow store or server);
 * `asked()` tells whether the UI has sent it yet. */
export function holdCommand(fake: FakeBackend, cmd: string): { release: () => void; asked: () => boolean } {
  let release = () => {};
  const held = new Promise<void>((r) => (release = r));
  let asked = false;
  mockIPC(
    async (name, args) => {
      if (name === cmd) {
        asked = true;
        await held;
      }
      return fake.handle(name, (args ?? {}) as Record<string, unknown>);
    },
    { shouldMockEvents: true },
  );
  return { release: () => release(), asked: () => asked };
}

export function freshStore(): Store {
  setLanguage("en");
  const s = resetStore();
  s.hasFocus = () => true;
  return s;
}

export async function renderApp() {
  const store = freshStore();
  const r = render(App);
  await waitFor(() => {
    if (!store.app) throw new Error("not booted");
  });
  return { ...r, store };
}

export async function fire(event: string, payload: unknown): Promise<void> {
  await emitAppEvent(event, payload);
}

/** A first run that hosts a server with a `general` room: "Host" and "Continue" on the setup
 * screen, landing on the registration form. */
export async function hostOnFirstRun(): Promise<{ fake: FakeBackend; user: ReturnType<typeof userEvent.setup> }> {
  const fake = installFake();
  fake.addRoom("general", []);
  await renderApp();
  const user = userEvent.setup();
  await user.click(await screen.findByTestId("setup-host"));
  await user.click(screen.getByTestId("setup-submit"));
  return { fake, user };
}
