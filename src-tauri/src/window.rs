//! The main window: showing, hiding and focusing it (tray, notification clicks, a second
//! launch), its title with the unread total, and hide-to-tray on close.

use tauri::{AppHandle, Manager, Runtime, WebviewWindow, WebviewWindowBuilder};

use crate::first_screen::{self, EventGate};

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

/// Creates the main window from tauri.conf.json's `main` entry (`"create": false` there, so
/// that it is made here), its page served with the first screen and its events passing an
/// [`EventGate`] (see `first_screen`). Nothing when the config has no such entry: the tests'
/// mock app makes its own window.
pub fn create_main<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN && !w.create);
    let Some(config) = config.cloned() else {
        return Ok(());
    };
    app.manage(EventGate::default());
    WebviewWindowBuilder::from_config(app, &config)?
        .on_web_resource_request(first_screen::serve_page(app.clone()))
        .build()?;
    Ok(())
}

/// Brings the window back from the tray or the taskbar and gives it focus.
pub fn show_main<R: Runtime>(app: &AppHandle<R>) {
    crate::asked::note(app, Visible(true));
    if let Some(w) = main_window(app) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

pub fn hide_main<R: Runtime>(app: &AppHandle<R>) {
    crate::asked::note(app, Visible(false));
    if let Some(w) = main_window(app) {
        let _ = w.hide();
    }
}

/// Tray click: hide a visible window, show a hidden one.
pub fn toggle_main<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = main_window(app) {
        if w.is_visible().unwrap_or(false) {
            hide_main(app);
        } else {
            show_main(app);
        }
    }
}

/// Renders the main window without WebKitGTK's accelerated compositing. By default WebKitGTK
/// composites every page through OpenGL, even one with nothing to composite; with software GL
/// (no GPU, a VM, Xvfb) that alone costs about 65 MiB of the web process's memory in any Tauri
/// window, and Natter's pages need none of it (no video, canvas or 3D; a virtual list of text
/// rows). docs/benchmarks.md, "App footprint", has the figures.
pub fn render_without_compositing<R: Runtime>(app: &AppHandle<R>) {
    #[cfg(target_os = "linux")]
    if let Some(w) = main_window(app) {
        let set = w.with_webview(|webview| {
            use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
            if let Some(settings) = webview.inner().settings() {
                settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
            }
        });
        if let Err(e) = set {
            tracing::warn!(error = %e, "cannot change the window's rendering settings");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = app;
}

/// The title the main window was last asked to show; `None` before the first unread total.
pub fn title_asked<R: Runtime>(app: &AppHandle<R>) -> Option<String> {
    crate::asked::last(app)
}

/// Whether the main window was last asked to show (`true`) or hide; `None` when neither.
pub fn visibility_asked<R: Runtime>(app: &AppHandle<R>) -> Option<Visible> {
    crate::asked::last(app)
}

/// A request to show (`true`) or hide the main window, as [`visibility_asked`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visible(pub bool);

/// Shows the unread total in the main window's title ("Natter (3)").
pub fn set_unread_title<R: Runtime>(app: &AppHandle<R>, unread_total: u32) {
    let title = title_for(unread_total);
    crate::asked::note(app, title.clone());
    if let Some(w) = main_window(app) {
        let _ = w.set_title(&title);
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
