//! The window's first screen, carried by the page itself: the main window's `index.html` is
//! served with `boot`'s answer in a JSON data block, so the page draws the signed-in screen
//! without waiting for an IPC round trip, and the events emitted from then until the page's
//! listeners are up are held back and handed over by the `listening` command, so none is lost
//! in between. docs/ipc.md, "Commands", is the contract; docs/benchmarks.md has the figures.
//!
//! Why: at a cold start the page otherwise waits for two round trips (`listen`, then `boot`)
//! with a loading screen drawn between, and the data is ready long before the page asks (the
//! profile is restored while WebKit starts).

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Duration;

use tauri::http::{header::CONTENT_TYPE, Request, Response};
use tauri::{AppHandle, Manager, Runtime};

use crate::commands::read_boot;
use crate::state::{send_event, EventEnvelope, Shell};

/// The data block's element id; the page reads it and removes it (ui/src/lib/first-screen.ts).
pub const ELEMENT_ID: &str = "natter-boot";

/// Messages of the reopened conversation in the page: a page as the window asks for one
/// (`PAGE` in ui/src/lib/store.svelte.ts).
pub const FIRST_PAGE: u32 = 100;

/// How long the page's HTML waits for the profile's restore to read its first screen (the
/// restore usually ends before WebKit asks for the page). Past it the page is served as it is
/// and asks `boot` itself behind its loading screen, so a restore that slow (stores being
/// checked, a hosted server starting) does not leave the window blank for longer.
pub const RESTORE_WAIT: Duration = Duration::from_secs(1);

/// Events held for a page that has not said `listening`, at most: a page that never says it
/// (a script that failed) must not make them grow without end. Past it they are dropped and
/// `listening` answers `false`, so the page reads its whole state again.
pub const MAX_HELD: usize = 2000;

/// Holds the main window's events between its HTML and its `listening` (see the module docs).
#[derive(Default)]
pub struct EventGate {
    held: Mutex<Option<Held>>,
}

#[derive(Default)]
struct Held {
    events: Vec<EventEnvelope>,
    dropped: bool,
}

impl EventGate {
    /// From now until [`EventGate::release`], events are held. Called before the first screen
    /// is read, so an event emitted while it is read is both in it and held (events set state;
    /// the page applies one twice alike). A reload starts over: what a previous page was held
    /// is in the new page's first screen.
    pub fn hold(&self) {
        *self.lock() = Some(Held::default());
    }

    /// `emit`s the event now, or holds it while a page has not said `listening`. `emit` runs
    /// under the gate's lock, so it keeps its place after the events [`EventGate::release`]
    /// hands over.
    pub fn pass(&self, event: EventEnvelope, emit: impl FnOnce(EventEnvelope)) {
        let mut held = self.lock();
        match held.as_mut() {
            Some(h) if h.events.len() < MAX_HELD => h.events.push(event),
            Some(h) => h.dropped = true,
            None => emit(event),
        }
    }

    /// The page listens: `emit`s the held events in order and stops holding. Returns whether
    /// every event since [`EventGate::hold`] was handed over (`false`: some were dropped).
    pub fn release(&self, mut emit: impl FnMut(EventEnvelope)) -> bool {
        let mut held = self.lock();
        let Some(h) = held.take() else {
            return true;
        };
        for event in h.events {
            emit(event);
        }
        !h.dropped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        // Nothing that runs under the lock panics halfway through a change; a poisoned gate
        // is still consistent.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `html` with `boot` (`boot`'s answer) in a JSON data block (`<script
/// type="application/json">`, which the page never runs and the CSP allows) just before
/// `</head>`; `None` when the HTML has no head.
/// Every `<`, `>` and `&` in the JSON is written as a `\u` escape, so no text in it (a message
/// saying `</script><img ...>`) can end the block or be read as markup.
pub fn embed(html: &[u8], boot: &impl serde::Serialize) -> Option<Vec<u8>> {
    let at = head_end(html)?;
    let json = serde_json::to_string(boot).ok()?;
    let mut out = Vec::with_capacity(html.len() + json.len() + 64);
    out.extend_from_slice(&html[..at]);
    out.extend_from_slice(b"<script type=\"application/json\" id=\"");
    out.extend_from_slice(ELEMENT_ID.as_bytes());
    out.extend_from_slice(b"\">");
    for c in json.chars() {
        match c {
            '<' => out.extend_from_slice(b"\\u003c"),
            '>' => out.extend_from_slice(b"\\u003e"),
            '&' => out.extend_from_slice(b"\\u0026"),
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.extend_from_slice(b"</script>");
    out.extend_from_slice(&html[at..]);
    Some(out)
}

/// Where `</head>` starts in `html`.
fn head_end(html: &[u8]) -> Option<usize> {
    const HEAD_END: &[u8] = b"</head>";
    html.windows(HEAD_END.len()).position(|w| w == HEAD_END)
}

/// Whether `request` asks for the page itself (not one of its scripts or styles).
fn is_page<B, C>(request: &Request<B>, response: &Response<C>) -> bool {
    let path = request.uri().path();
    let html = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    (path == "/" || path == "/index.html") && html && response.status().is_success()
}

/// A response Tauri's `tauri:` scheme answers with (`on_web_resource_request`).
pub type PageResponse = Response<Cow<'static, [u8]>>;

/// The main window's web resource handler: puts the first screen into the page (see the module
/// docs). Runs on the async runtime (Tauri's `tauri:` scheme answers there), so waiting for the
/// restore does not hold up the main thread.
pub fn serve_page<R: Runtime>(
    app: AppHandle<R>,
) -> impl Fn(Request<Vec<u8>>, &mut PageResponse) + Send + Sync + 'static {
    move |request, response| {
        if !is_page(&request, response) || head_end(response.body()).is_none() {
            return;
        }
        let (Some(shell), Some(gate)) = (app.try_state::<Shell>(), app.try_state::<EventGate>())
        else {
            return;
        };
        let shell = shell.inner().clone();
        let boot = wait_for(async {
            tokio::time::timeout(RESTORE_WAIT, shell.restored())
                .await
                .ok()?;
            gate.hold();
            Some(read_boot(&shell, FIRST_PAGE).await)
        });
        let Some(boot) = boot else {
            tracing::info!(
                "the profile is still being restored; the page asks for its first screen"
            );
            return;
        };
        match embed(response.body(), &boot) {
            Some(page) => *response.body_mut() = Cow::Owned(page),
            None => {
                tracing::warn!("cannot write the first screen into the page; it asks for it");
                gate.release(|event| send_event(&app, event));
            }
        }
    }
}

/// Runs `task` to its end from the synchronous resource handler: on a worker of the async
/// runtime (where Tauri calls it) the worker is handed over to the others while it waits.
fn wait_for<T>(task: impl std::future::Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => tokio::task::block_in_place(|| runtime.block_on(task)),
        Err(_) => tauri::async_runtime::block_on(task),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const PAGE: &str =
        "<!doctype html><html><head><title>Natter</title></head><body></body></html>";

    /// The data block's text in `page`, and the page without it.
    fn split(page: &[u8]) -> (String, String) {
        let page = String::from_utf8(page.to_vec()).unwrap();
        let open = format!("<script type=\"application/json\" id=\"{ELEMENT_ID}\">");
        let start = page.find(&open).expect("a data block");
        let end = start + page[start..].find("</script>").unwrap();
        let block = page[start + open.len()..end].to_string();
        let rest = format!("{}{}", &page[..start], &page[end + "</script>".len()..]);
        (block, rest)
    }

    #[test]
    fn the_first_screen_goes_into_the_head_and_no_text_in_it_can_end_the_block() {
        let hostile = json!({
            "text": "</script><img src=x onerror=alert(1)>",
            "comment": "<!-- <script> --> & &amp; \u{2028}",
            "name": "</SCRIPT >",
        });
        let page = embed(PAGE.as_bytes(), &hostile).expect("embedded");
        let (block, rest) = split(&page);
        assert_eq!(rest, PAGE, "the page around the block is unchanged");
        assert!(
            page.windows(b"</head>".len()).position(|w| w == b"</head>")
                > page.windows(b"<script".len()).position(|w| w == b"<script"),
            "the block is inside the head"
        );
        for c in ['<', '>', '&'] {
            assert!(!block.contains(c), "{c} escaped in {block}");
        }
        let read: Value = serde_json::from_str(&block).unwrap();
        assert_eq!(read, hostile, "the page reads back exactly what was put in");
    }

    #[test]
    fn a_page_without_a_head_is_left_alone() {
        assert!(embed(b"<html><body></body></html>", &json!({})).is_none());
    }

    #[test]
    fn only_the_page_itself_carries_the_first_screen() {
        let ask = |path: &str, kind: &str, status: u16| {
            let request = Request::builder().uri(format!("tauri://localhost{path}"));
            let response = Response::builder()
                .status(status)
                .header(CONTENT_TYPE, kind)
                .body(())
                .unwrap();
            is_page(&request.body(()).unwrap(), &response)
        };
        assert!(ask("/", "text/html", 200));
        assert!(ask("/index.html", "text/html; charset=utf-8", 200));
        assert!(!ask("/assets/index.js", "text/javascript", 200));
        assert!(!ask("/other.html", "text/html", 200));
        assert!(!ask("/index.html", "text/html", 404));
        assert!(!ask("/", "text/plain", 200));
    }

    fn event(n: usize) -> EventEnvelope {
        EventEnvelope {
            event: "natter://typing".into(),
            payload: json!(n),
        }
    }

    fn numbers(events: &[EventEnvelope]) -> Vec<u64> {
        events.iter().map(|e| e.payload.as_u64().unwrap()).collect()
    }

    #[test]
    fn events_wait_for_a_page_that_carried_its_first_screen_and_keep_their_order() {
        let gate = EventGate::default();
        let mut sent = Vec::new();
        // No page held anything: events go at once, and `listening` hands over nothing.
        gate.pass(event(0), |e| sent.push(e));
        assert_eq!(numbers(&sent), [0]);
        assert!(gate.release(|e| sent.push(e)));
        assert_eq!(numbers(&sent), [0]);

        gate.hold();
        gate.pass(event(1), |e| sent.push(e));
        gate.pass(event(2), |e| sent.push(e));
        assert_eq!(numbers(&sent), [0], "held until the page listens");
        assert!(gate.release(|e| sent.push(e)));
        gate.pass(event(3), |e| sent.push(e));
        assert_eq!(numbers(&sent), [0, 1, 2, 3]);
    }

    #[test]
    fn a_reload_starts_over_and_a_page_that_never_listens_cannot_grow_the_gate() {
        let gate = EventGate::default();
        let mut sent = Vec::new();
        gate.hold();
        gate.pass(event(1), |e| sent.push(e));
        // The page was loaded again: its new first screen has what the first one was held.
        gate.hold();
        gate.pass(event(2), |e| sent.push(e));
        assert!(gate.release(|e| sent.push(e)));
        assert_eq!(numbers(&sent), [2]);

        sent.clear();
        gate.hold();
        for n in 0..MAX_HELD + 5 {
            gate.pass(event(n), |e| sent.push(e));
        }
        assert!(sent.is_empty());
        assert!(!gate.release(|e| sent.push(e)), "some were dropped");
        assert_eq!(sent.len(), MAX_HELD);
        assert_eq!(numbers(&sent[..2]), [0, 1], "the first ones, in order");
    }
}
