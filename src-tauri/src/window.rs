//! The main window: showing, hiding and focusing it (tray, notification clicks, a second
//! launch), its title with the unread total, and hide-to-tray on close.

use tauri::{AppHandle, Manager, Runtime, WebviewWindow};

pub const MAIN: &str = "main";

/// "Natter" or "Natter (3)".
pub fn title_for(unread_total: u32) -> String {
    if unread_total == 0 {
        "Natter".to_string()
    } else {
        format!("Natter ({unread_total})")
    }
}

pub fn main_window<R: Runtime>(app: &AppHandle<R>) -> Option<WebviewWindow<R>> {
    app.get_webview_window(MAIN)
}

/// Brings the window back from the tray or the taskbar and gives it focus.
pub fn show_main<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = main_window(app) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

pub fn hide_main<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = main_window(app) {
        let _ = w.hide();
    }
}

/// Tray click: hide a visible window, show a hidden one.
pub fn toggle_main<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = main_window(app) {
        if w.is_visible().unwrap_or(false) {
            let _ = w.hide();
        } else {
            show_main(app);
        }
    }
}

pub fn set_unread_title<R: Runtime>(app: &AppHandle<R>, unread_total: u32) {
    if let Some(w) = main_window(app) {
        let _ = w.set_title(&title_for(unread_total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_shows_the_unread_total() {
        assert_eq!(title_for(0), "Natter");
        assert_eq!(title_for(3), "Natter (3)");
    }
}
