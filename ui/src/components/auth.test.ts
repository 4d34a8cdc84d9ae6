import { describe, expect, it, vi } from "vitest";
import { screen } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { hostOnFirstRun, installFake, renderApp, fire } from "../test/harness";

async function signIn(user: ReturnType<typeof userEvent.setup>, username: string, password: string) {
  // A signed-out start shows the sign-in form (the account exists).
  await user.type(await screen.findByTestId("auth-username"), username);
  await user.type(screen.getByTestId("auth-password"), password);
  await user.click(screen.getByTestId("auth-login"));
}

describe("first run and sign in", () => {
  it("hosts a server, shares it and shows the addresses to share, then registers into the main window", async () => {
    const { fake, user } = await hostOnFirstRun();

    // Only this computer reaches it until the host shares it on the network.
    expect(await screen.findByTestId("share-off")).toHaveTextContent("Only this computer");
    expect(screen.queryAllByTestId("hosting-address")).toHaveLength(0);
    await user.click(screen.getByRole("checkbox", { name: "Share on the network" }));
    const addresses = await screen.findAllByTestId("hosting-address");
    expect(addresses.map((a) => a.textContent)).toEqual(["https://192.168.1.23:8686", "https://10.0.0.5:8686"]);
    // The certificate's fingerprint, which those who join compare with the one their app shows.
    expect(screen.getByTestId("hosting-fingerprint").textContent).toBe("3F9A-1C02-77B4-0E5D-9A21-C4F0-6B83-D217");
    expect(fake.calls.find((c) => c.cmd === "host_server")?.args).toEqual({ port: 8686 });

    await user.type(screen.getByTestId("auth-username"), "alice");
    await user.type(screen.getByTestId("auth-password"), "correct horse");
    await user.type(screen.getByTestId("auth-display-name"), "Alice A.");
    await user.click(screen.getByRole("radio", { name: "🐼" }));
    await user.click(screen.getByTestId("auth-register"));

    await screen.findByTestId("composer").catch(() => null);
    const item = await screen.findByTestId("conv-item");
    expect(item.dataset.convName).toBe("general");
    expect(fake.calls.find((c) => c.cmd === "register")?.args).toEqual({
      username: "alice",
      password: "correct horse",
      displayName: "Alice A.",
      avatar: "🐼",
    });
    expect(screen.getByTestId("me-name").textContent).toBe("Alice A.");
  });

  it("rejects a join URL that is not http(s) without calling the backend", async () => {
    const fake = installFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("setup-join"));
    await user.type(screen.getByTestId("server-url"), "javascript:alert(1)");
    await user.click(screen.getByTestId("setup-submit"));
    expect(await screen.findByTestId("setup-error")).toHaveTextContent("http://");
    expect(fake.calls.some((c) => c.cmd === "join_server")).toBe(false);

    await user.clear(screen.getByTestId("server-url"));
    await user.type(screen.getByTestId("server-url"), "http://10.1.2.3:8686");
    await user.click(screen.getByTestId("setup-submit"));
    await screen.findByTestId("auth-username");
    expect(fake.calls.find((c) => c.cmd === "join_server")?.args).toEqual({ url: "http://10.1.2.3:8686" });
    // Another machine over http://: the password would cross the network in clear text.
    expect(screen.getByTestId("plaintext-warning")).toHaveTextContent("not encrypted");
  });

  it("joins a host by its certificate's fingerprint once the person confirms it", async () => {
    const fake = installFake();
    const url = "https://192.168.1.50:8686";
    const fp = "3F9A-1C02-77B4-0E5D-9A21-C4F0-6B83-D217";
    fake.certificates.set(url, fp);
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("setup-join"));
    await user.type(screen.getByTestId("server-url"), url);
    await user.click(screen.getByTestId("setup-submit"));
    // Refused until confirmed: the fingerprint is shown, nothing is trusted yet.
    expect(await screen.findByTestId("join-fingerprint")).toHaveTextContent(fp);
    expect(screen.getByTestId("join-certificate")).toHaveTextContent("pretending to be the server");
    expect(fake.calls.some((c) => c.cmd === "trust_certificate")).toBe(false);
    expect(screen.queryByTestId("auth-username")).toBeNull();

    await user.click(screen.getByTestId("trust-fingerprint"));
    await screen.findByTestId("auth-username");
    expect(fake.calls.find((c) => c.cmd === "trust_certificate")?.args).toEqual({ url, fingerprint: fp });
  });

  it("lists the hosts found on the network and joins one by a click, confirming its fingerprint", async () => {
    const fake = installFake();
    const url = "https://192.168.1.60:8686";
    const fp = "0F0F-1C02-77B4-0E5D-9A21-C4F0-6B83-D217";
    fake.certificates.set(url, fp);
    fake.found = [{ name: "carols-laptop", server_id: "9f2c4e7a1b3d5f60718293a4b5c6d7e8", fingerprint: fp, urls: [url] }];
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("setup-join"));
    const host = await screen.findByTestId("found-host");
    expect(host).toHaveTextContent("carols-laptop");
    expect(host).toHaveTextContent(url);
    await user.click(host);
    expect(await screen.findByTestId("join-fingerprint")).toHaveTextContent(fp);
    await user.click(screen.getByTestId("trust-fingerprint"));
    await screen.findByTestId("auth-username");
    expect(fake.calls.find((c) => c.cmd === "join_server")?.args).toEqual({ url });
  });

  it("says when no host is heard on the network", async () => {
    installFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("setup-join"));
    expect(await screen.findByTestId("found-none")).toHaveTextContent("None found");
  });

  it("shows the warning when the certificate changed between the probe and the confirmation", async () => {
    const fake = installFake();
    const url = "https://192.168.1.50:8686";
    fake.certificates.set(url, "3F9A-1C02-77B4-0E5D-9A21-C4F0-6B83-D217");
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("setup-join"));
    await user.type(screen.getByTestId("server-url"), url);
    await user.click(screen.getByTestId("setup-submit"));
    await screen.findByTestId("join-fingerprint");
    fake.certificates.set(url, "0000-1111-2222-3333-4444-5555-6666-7777");
    await user.click(screen.getByTestId("trust-fingerprint"));
    expect(await screen.findByTestId("setup-error")).toHaveTextContent("certificate has changed");
    expect(screen.queryByTestId("auth-username")).toBeNull();
  });

  it("shows a translated error for a wrong password and signs in with the right one", async () => {
    const fake = installFake({ phase: "signed_out", server_url: "http://h:1" });
    fake.addUser("bob", "Bob", "🐼", false, "hunter2hunter2");
    await renderApp();
    const user = userEvent.setup();
    await signIn(user, "bob", "wrong-password");
    expect(await screen.findByTestId("auth-error")).toHaveTextContent("Wrong username or password.");

    await user.clear(screen.getByTestId("auth-password"));
    await user.type(screen.getByTestId("auth-password"), "hunter2hunter2");
    await user.click(screen.getByTestId("auth-login"));
    await screen.findByTestId("settings-open");
  });

  it("refuses to submit an empty registration", async () => {
    const fake = installFake({ phase: "signed_out", server_url: "http://h:1" });
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("auth-toggle-mode"));
    await user.type(await screen.findByTestId("auth-username"), "alice");
    await user.click(screen.getByTestId("auth-register"));
    // The browser's `required` validation blocks submission in a real webview; jsdom does not
    // enforce it, so the component's own check must.
    expect(fake.calls.some((c) => c.cmd === "register")).toBe(false);
  });

  it("returns to the sign-in screen with the reason when the session is refused", async () => {
    const fake = installFake({ phase: "signed_out", server_url: "http://h:1" });
    fake.addUser("bob", "Bob", "🐼", false, "hunter2hunter2");
    await renderApp();
    const user = userEvent.setup();
    await signIn(user, "bob", "hunter2hunter2");
    await screen.findByTestId("settings-open");

    await fire("natter://connection", { state: "signed_out", reason: "token revoked" });
    expect(await screen.findByTestId("signed-out-reason")).toHaveTextContent("token revoked");
    expect(screen.queryByTestId("settings-open")).toBeNull();
  });

  it("defaults the language from the system on first run", async () => {
    const lang = vi.spyOn(navigator, "language", "get").mockReturnValue("zh-CN");
    try {
      const fake = installFake();
      await renderApp();
      expect(await screen.findByTestId("setup-submit")).toHaveTextContent("继续");
      expect(fake.state.settings.language).toBe("zh-CN");
    } finally {
      lang.mockRestore();
    }
  });

  it("keeps the saved language once set up", async () => {
    const lang = vi.spyOn(navigator, "language", "get").mockReturnValue("zh-CN");
    try {
      const fake = installFake({ phase: "signed_out", server_url: "http://h:1" });
      await renderApp();
      expect(await screen.findByTestId("auth-login")).toHaveTextContent("Sign in");
      expect(fake.calls.some((c) => c.cmd === "set_settings")).toBe(false);
    } finally {
      lang.mockRestore();
    }
  });
});
