/**
 * Entry point. In `npm run dev` with `?mock` in the URL, an in-browser fake backend is installed
 * first (for screenshots and UI work without Rust). Both conditions below are compile-time
 * constants: false in a normal production build, so that branch and the mock module are dropped
 * from the bundle (scripts/check-dist.mjs verifies it). `VITE_NATTER_MOCK=1 vite build` makes a
 * preview bundle that keeps it, to try the real bundle under the app's CSP (scripts/csp-preview.mjs).
 */
import { mount } from "svelte";
import "./app.css";
import App from "./App.svelte";
import { applyFontPlatform } from "./lib/fonts";
import { stylesheetsLoaded } from "./lib/first-screen";

// Start-up marks (`natter:*`): natter-bench footprint reads them after the first paint to show
// where a cold start's time went.
performance.mark("natter:script");
applyFontPlatform();

async function start() {
  const mockable = import.meta.env.DEV || import.meta.env.VITE_NATTER_MOCK === "1";
  if (mockable && new URLSearchParams(location.search).has("mock")) {
    const { installMockBackend } = await import("./mock/backend");
    installMockBackend(new URLSearchParams(location.search));
  }
  await stylesheetsLoaded();
  mount(App, { target: document.getElementById("app")! });
  performance.mark("natter:mounted");
}

void start();
