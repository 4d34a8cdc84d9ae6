import { describe, expect, it, vi, afterEach } from "vitest";
import { render, screen, waitFor } from "@testing-library/svelte";
import { bannerView } from "../lib/banner";
import { freshStore } from "../test/harness";
import { defaultSettings } from "../mock/fake";
import Banner from "./Banner.svelte";

describe("connection banner", () => {
  afterEach(() => vi.useRealTimers());

  it("maps states to views", () => {
    expect(bannerView({ state: "online" }, 0)).toEqual({ kind: "hidden" });
    expect(bannerView({ state: "connecting" }, 0)).toEqual({ kind: "connecting" });
    expect(bannerView({ state: "offline", retry_at: 10_500, reason: "x" }, 5_000)).toEqual({ kind: "offline", seconds: 6, reason: "x" });
    expect(bannerView({ state: "offline", retry_at: 1_000, reason: "" }, 5_000)).toMatchObject({ seconds: 0 });
  });

  it("counts down to the retry, then hides when online", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    vi.setSystemTime(1_000_000);
    const store = freshStore();
    store.app = {
      phase: "ready",
      server_url: "http://h",
      hosting: null,
      user: { username: "a", display_name: "A", avatar: "🦊" },
      settings: defaultSettings(),
      last_conversation: null,
      connection: { state: "offline", retry_at: 1_000_000 + 5_000, reason: "connection refused" },
    };
    render(Banner);
    const banner = await screen.findByTestId("banner");
    expect(banner.dataset.state).toBe("offline");
    expect(banner).toHaveTextContent("Offline. Retrying in 5 s");
    expect(banner).toHaveTextContent("connection refused");

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
