//! What the app last asked of the window system (the main window's title and visibility, the
//! tray icon), kept by the app itself. Tauri's mock runtime forgets all three and has no tray,
//! so the tests read the decision here instead of the window.

use std::sync::Mutex;

use tauri::{AppHandle, Manager, Runtime};

/// The last value of one kind of request; each kind is its own type, so each has one slot.
struct Asked<T>(Mutex<T>);

/// Notes `value` as the latest request of its kind.
pub(crate) fn note<R: Runtime, T: Clone + Send + Sync + 'static>(app: &AppHandle<R>, value: T) {
    if let Some(asked) = app.try_state::<Asked<T>>() {
        *asked.0.lock().unwrap_or_else(|e| e.into_inner()) = value;
    } else if !app.manage(Asked(Mutex::new(value.clone()))) {
        // Another thread made the slot between the two calls.
        *app.state::<Asked<T>>()
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// The latest request of this kind; `None` when none was made.
pub fn last<R: Runtime, T: Clone + Send + Sync + 'static>(app: &AppHandle<R>) -> Option<T> {
    app.try_state::<Asked<T>>()
        .map(|asked| asked.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
}
