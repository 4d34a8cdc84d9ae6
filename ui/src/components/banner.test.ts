import { describe, expect, it, vi, afterEach } from "vitest";
import { render, screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { bannerView, whyOffline } from "../lib/banner";
import { freshStore, renderApp, teamFake } from "../test/harness";
import { defaultSettings } from "../mock/fake";
import Banner from "./Banner.svelte";

describe("connection banner", () => {
  afterEach(() => vi.useRealTimers());

  it("maps states to views", () => {
    expect(bannerView({ state: "online" }, 0)).toEqual({ kind: "hidden" });
    expect(bannerView({ state: "connecting" }, 0)).toEqual({ kind: "connecting" });
    expect(bannerView({ state: "offline", retry_at: 10_500, reason: "x" }, 5_000)).toEqual({ kind: "offline", seconds: 6, why: "other" });
    expect(bannerView({ state: "offline", retry_at: 1_000, reason: "" }, 5_000)).toMatchObject({ seconds: 0 });
  });

  it("counts down to the retry, then hides when online", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    vi.setSystemTime(1_000_000);
    const store = freshStore();
    store.app = {
      phase: "ready",
      server_url: "http://h",
      plaintext: true,
      hosting: null,
      user: { username: "a", display_name: "A", avatar: "🦊" },
      settings: defaultSettings(),
      last_conversation: null,
      connection: { state: "offline", retry_at: 1_000_000 + 5_000, reason: "connection refused" },
      accounts: [],
    };
    render(Banner);
    const banner = await screen.findByTestId("banner");
    expect(banner.dataset.state).toBe("offline");
    expect(banner).toHaveTextContent("Offline. Retrying in 5 s");
    expect(banner).toHaveTextContent("The server is not accepting connections");
    expect(banner).not.toHaveTextContent("connection refused");

    vi.advanceTimersByTime(2_100);
    await waitFor(() => expect(screen.getByTestId("banner")).toHaveTextContent("Retrying in 3 s"));
    vi.advanceTimersByTime(3_000);
    await waitFor(() => expect(screen.getByTestId("banner")).toHaveTextContent("Retrying now"));

    store.onConnection({ state: "connecting" });
    await waitFor(() => expect(screen.getByTestId("banner").dataset.state).toBe("connecting"));
    store.onConnection({ state: "online" });
    await waitFor(() => expect(screen.queryByTestId("banner")).toBeNull());
  });
});

describe("offline banner in words", () => {
  const RAW = "IO error: Connection refused (os error 111)";

  it("names the kind of failure, never the raw error", () => {
    expect(whyOffline(RAW)).toBe("refused");
    expect(whyOffline("the server did not answer in time")).toBe("timeout");
    expect(whyOffline("IO error: Connection timed out (os error 110)")).toBe("timeout");
    expect(whyOffline("failed to lookup address information: Name or service not known")).toBe("dns");
    expect(whyOffline("IO error: No route to host (os error 113)")).toBe("network");
    expect(whyOffline("IO error: Connection reset by peer (os error 104)")).toBe("lost");
    expect(whyOffline("the server closed the connection")).toBe("lost");
    expect(whyOffline("something new")).toBe("other");
    // The client's certificate refusals, although their text mentions what others match.
    expect(whyOffline("certificate changed: the certificate of h:1 changed ... nothing was sent")).toBe("changed");
    expect(whyOffline("untrusted certificate: the certificate of h:1 is not trusted (refused)")).toBe("untrusted");
  });

  it.each([
    ["en", "The server is not accepting connections", "Retry now"],
    ["zh-CN", "服务器拒绝连接", "立即重试"],
  ] as const)("says it in %s with a Retry now that reconnects", async (lang, why, retry) => {
    const fake = teamFake();
    fake.state.settings.language = lang;
    fake.state.connection = { state: "offline", retry_at: Date.now() + 30_000, reason: RAW };
    await renderApp();
    const banner = await screen.findByTestId("banner");
    expect(banner.dataset.state).toBe("offline");
    expect(screen.getByTestId("banner-why")).toHaveTextContent(why);
    expect(banner.textContent).not.toContain("os error");
    expect(banner.textContent).not.toContain("Connection refused");
    const button = screen.getByTestId("banner-retry");
    expect(button).toHaveTextContent(retry);
    await userEvent.setup().click(button);
    expect(fake.calls.some((c) => c.cmd === "reconnect_now")).toBe(true);
    // The fake answers like the client: a new attempt starts at once.
    await waitFor(() => expect(screen.getByTestId("banner").dataset.state).toBe("connecting"));
  });
});
