/**
 * Run by its host (issue 19): the host shares its server and makes invites in Settings; a
 * newcomer pastes the invite, confirms the fingerprint and registers with its code; admins
 * approve or refuse waiting accounts. Through the mock backend and the real `api.ts`.
 */
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { hostOnFirstRun, installFake, renderApp, teamFake } from "../test/harness";
import { setLanguage } from "../lib/i18n.svelte";

type User = ReturnType<typeof userEvent.setup>;

const FP = "3F9A-1C02-77B4-0E5D-9A21-C4F0-6B83-D217";
const CODE = "Zq3v8N1xKcR5tYw0bLm2hJ9sDf6gA4eUoPi7nTk1XyE";
const SERVER = "https://192.168.1.50:8686";

function link(fingerprint = FP, code = CODE): string {
  const q = new URLSearchParams({ server: `${SERVER}/`, fingerprint, code });
  return `natter://invite?${q.toString()}`;
}

async function register(user: User, username: string) {
  await user.type(screen.getByTestId("auth-username"), username);
  await user.type(screen.getByTestId("auth-password"), "correct horse");
  await user.type(screen.getByTestId("auth-display-name"), username);
  await user.click(screen.getByTestId("auth-register"));
}

describe("hosting and inviting", () => {
  it("the host shares on the network, makes an invite to copy, and revokes it", async () => {
    const { fake, user } = await hostOnFirstRun();
    // The host's own first account needs no invite: no invite field.
    await screen.findByTestId("auth-register");
    expect(screen.queryByTestId("auth-invite")).toBeNull();
    await register(user, "host");
    await screen.findByTestId("conv-item");
    expect(fake.users.get("host")!.user.admin).toBe(true);

    await user.click(screen.getByTestId("settings-open"));
    const panel = await screen.findByTestId("host-panel");
    expect(within(panel).getByTestId("host-registration")).toHaveTextContent("invite only");
    // Not shared at first: nobody else can reach it, and the panel says so.
    expect(within(panel).getByTestId("share-off")).toHaveTextContent("Only this computer");
    expect(within(panel).queryAllByTestId("hosting-address")).toHaveLength(0);
    await user.click(within(panel).getByRole("checkbox", { name: "Share on the network" }));
    await waitFor(() => expect(within(panel).getAllByTestId("hosting-address")).toHaveLength(2));
    expect(fake.calls.find((c) => c.cmd === "set_sharing")?.args).toEqual({ on: true });

    await user.selectOptions(within(panel).getByTestId("invite-expiry"), "86400");
    await user.click(within(panel).getByTestId("invite-make"));
    expect(fake.calls.find((c) => c.cmd === "create_invite")?.args).toEqual({ expiresIn: 86400 });
    const code = (await within(panel).findByTestId("invite-code")).textContent!;
    expect(code).toHaveLength(43);
    const links = within(panel).getAllByTestId("invite-link").map((l) => l.textContent);
    expect(links).toHaveLength(2);
    expect(links[0]).toContain(encodeURIComponent("https://192.168.1.23:8686/"));
    expect(links[0]).toContain(`code=${code}`);
    await user.click(within(panel).getAllByTestId("invite-copy")[0]);
    const copied = await navigator.clipboard.readText();
    expect(copied).toContain(links[0]!);
    expect(copied).toContain(FP);
    expect(within(panel).getAllByTestId("invite-row")).toHaveLength(1);

    await user.click(within(panel).getByTestId("invite-revoke"));
    await within(panel).findByTestId("invite-none");
    expect(fake.invites.size).toBe(0);
    expect(within(panel).queryByTestId("invite-made")).toBeNull();

    // Turned off again: the addresses go, the hint comes back.
    await user.click(within(panel).getByTestId("share-toggle"));
    await within(panel).findByTestId("share-off");
    expect(fake.state.hosting?.shared).toBe(false);
  });

  it("a newcomer pastes the invite, confirms the fingerprint it names and registers with its code", async () => {
    const fake = installFake();
    fake.addRoom("general", []);
    fake.certificates.set(SERVER, FP);
    fake.registration = "invite";
    fake.invites.set(CODE, { id: 1, created_by: "host", created_at: 0, expires_at: Date.now() + 3_600_000 });
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("setup-join"));
    // The whole message the host sent, with nothing typed into the address.
    await user.type(screen.getByTestId("setup-invite"), `Join my Natter server: ${link()} (fingerprint ${FP})`);
    await user.click(screen.getByTestId("setup-submit"));
    expect(await screen.findByTestId("join-fingerprint")).toHaveTextContent(FP);
    expect(screen.getByTestId("invite-fingerprint-matches")).toBeInTheDocument();
    await user.click(screen.getByTestId("trust-fingerprint"));
    expect(fake.calls.find((c) => c.cmd === "join_server")?.args).toEqual({ url: SERVER });

    const field = (await screen.findByTestId("auth-invite")) as HTMLInputElement;
    expect(field.value).toBe(CODE);
    await register(user, "newcomer");
    await screen.findByTestId("conv-item");
    expect(fake.calls.find((c) => c.cmd === "register")?.args).toMatchObject({ username: "newcomer", invite: CODE });
    expect(fake.invites.size).toBe(0);
  });

  it("says in the person's language why an invite does not work", async () => {
    const fake = installFake({ server_url: SERVER, phase: "signed_out" });
    fake.registration = "invite";
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("auth-toggle-mode"));
    // No invite on an invite-only server.
    await register(user, "nobody");
    expect(await screen.findByTestId("auth-error")).toHaveTextContent("only lets people in with an invite");
    // A used, revoked or expired one.
    await user.type(screen.getByTestId("auth-invite"), link());
    await user.clear(screen.getByTestId("auth-username"));
    await user.clear(screen.getByTestId("auth-password"));
    await user.clear(screen.getByTestId("auth-display-name"));
    await register(user, "nobody");
    await waitFor(() => expect(screen.getByTestId("auth-error")).toHaveTextContent("already used, revoked or has expired"));
    expect(fake.calls.filter((c) => c.cmd === "register").at(-1)?.args).toMatchObject({ invite: CODE });
    // Text that is no invite at all is refused before anything is sent.
    const sent = fake.calls.filter((c) => c.cmd === "register").length;
    await user.clear(screen.getByTestId("auth-invite"));
    await user.type(screen.getByTestId("auth-invite"), "hello");
    await user.click(screen.getByTestId("auth-register"));
    await waitFor(() => expect(screen.getByTestId("auth-error")).toHaveTextContent("not an invite"));
    expect(fake.calls.filter((c) => c.cmd === "register")).toHaveLength(sent);

    setLanguage("zh-CN");
    await user.clear(screen.getByTestId("auth-invite"));
    await user.type(screen.getByTestId("auth-invite"), CODE);
    await user.click(screen.getByTestId("auth-register"));
    await waitFor(() => expect(screen.getByTestId("auth-error")).toHaveTextContent("此邀请无效"));
  });

  it("warns when the server's fingerprint is not the one the invite names", async () => {
    const fake = installFake();
    fake.certificates.set(SERVER, FP);
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("setup-join"));
    const other = "0000-1111-2222-3333-4444-5555-6666-7777";
    await user.type(screen.getByTestId("setup-invite"), link(other));
    await user.click(screen.getByTestId("setup-submit"));
    expect(await screen.findByTestId("invite-fingerprint-differs")).toHaveTextContent(other);
    expect(screen.queryByTestId("invite-fingerprint-matches")).toBeNull();
  });

  it("an admin approves one waiting account and refuses another; others see no panel", async () => {
    const fake = teamFake();
    fake.users.get("alice")!.user.admin = true;
    fake.pending = [
      { username: "dora", display_name: "Dora", created_at: 1 },
      { username: "eve", display_name: "Eve", created_at: 2 },
    ];
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    const panel = await screen.findByTestId("host-panel");
    await waitFor(() => expect(within(panel).getAllByTestId("pending-row")).toHaveLength(2));
    await user.click(within(panel).getAllByTestId("pending-approve")[0]);
    await waitFor(() => expect(within(panel).getAllByTestId("pending-row")).toHaveLength(1));
    expect(fake.users.has("dora")).toBe(true);
    await user.click(within(panel).getByTestId("pending-reject"));
    await waitFor(() => expect(within(panel).queryByTestId("pending-list")).toBeNull());
    expect(fake.users.has("eve")).toBe(false);
    expect(fake.calls.filter((c) => c.cmd === "reject_account").map((c) => c.args)).toEqual([{ username: "eve" }]);
  });

  it("a member who is not an admin and not hosting has no hosting panel", async () => {
    teamFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    await screen.findByTestId("settings-dialog");
    expect(screen.queryByTestId("host-panel")).toBeNull();
  });
});
