/**
 * Entry point. In `npm run dev` with `?mock` in the URL, an in-browser fake backend is installed
 * first (for screenshots and UI work without Rust); `import.meta.env.DEV` is false in production
 * builds, so that branch and the mock module are dropped from the bundle.
 */
import { mount } from "svelte";
import "./app.css";
import App from "./App.svelte";

async function start() {
  if (import.meta.env.DEV && new URLSearchParams(location.search).has("mock")) {
    const { installMockBackend } = await import("./mock/backend");
    installMockBackend(new URLSearchParams(location.search));
  }
  mount(App, { target: document.getElementById("app")! });
}

void start();
