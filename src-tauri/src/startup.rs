//! How the app starts: at login (the desktop's autostart entry, through the Tauri autostart
//! plugin) and hidden in the tray. Both follow the `start_at_login` and `start_minimised`
//! settings; the decisions are plain functions so they are tested without a window.

use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_autostart::AutoLaunchManager;

use crate::config::{DesktopConfig, Settings};
use crate::state::{Phase, Shell};
use crate::window;

/// The autostart plugin as the app registers it: the entry starts the app with no arguments
/// (whether it then hides is the `start_minimised` setting's, so a start at login and a start
/// from the menu behave alike). On Linux the entry is `~/.config/autostart/<product name>.desktop`.
pub fn autostart_plugin<R: Runtime>() -> TauriPlugin<R> {
    tauri_plugin_autostart::init(tauri_plugin_autostart::MacosLauncher::LaunchAgent, None)
}

/// Whether the main window starts hidden, with only the tray icon showing: when the user asked
/// for it and is signed in. Signed out (or with no server chosen) the window is needed to sign
/// in, so hiding it would only leave an app that does nothing until clicked.
pub fn start_hidden(settings: &Settings, phase: Phase) -> bool {
    settings.start_minimised && phase == Phase::Ready
}

/// Writes (`enabled`) or removes the app's autostart entry. Fails with a sentence a person
/// understands when the desktop refuses (e.g. the autostart directory cannot be written), or
/// when the app was built without the plugin.
pub fn set_start_at_login<R: Runtime>(app: &AppHandle<R>, enabled: bool) -> Result<(), String> {
    let Some(manager) = app.try_state::<AutoLaunchManager>() else {
        return Err("starting at login is not available in this build".into());
    };
    let result = if enabled {
        manager.enable()
    } else {
        manager.disable()
    };
    result.map_err(|e| {
        let what = if enabled { "add" } else { "remove" };
        format!("cannot {what} Natter's start-at-login entry: {e}")
    })
}

/// Hides the main window as the app starts (from `init`, before the profile's restore, so a
/// window that starts in the tray never flashes up) when [`start_hidden`] says so for the phase
/// the saved config promises: signed in when it names an active account. Returns whether it
/// hid the window, for [`apply_after_restore`]. The tray icon, created when the event loop is
/// ready, brings it back; without a tray the window is shown again, see `run`.
pub fn hide_at_start<R: Runtime>(app: &AppHandle<R>, config: &DesktopConfig) -> bool {
    let promised = match (&config.server_url, config.active_account()) {
        (Some(_), Some(_)) => Phase::Ready,
        (Some(_), None) => Phase::SignedOut,
        (None, _) => Phase::Setup,
    };
    let hide = start_hidden(&config.settings, promised);
    if hide {
        tracing::info!("starting minimised to the tray");
        window::hide_main(app);
    }
    hide
}

/// Once the profile is restored: shows the window again if it was hidden at start but the
/// account could not be resumed (signing in needs the window), and rewrites the autostart
/// entry when starting at login is on, so it names this binary even after the app moved and
/// comes back if the desktop lost it. With the setting off the entry is left alone: only
/// turning the setting off removes it.
pub fn apply_after_restore<R: Runtime>(app: &AppHandle<R>, shell: &Shell, hidden: bool) {
    let state = shell.app_state();
    if hidden && !start_hidden(&state.settings, state.phase) {
        window::show_main(app);
    }
    if state.settings.start_at_login {
        if let Err(e) = shell.ui().set_start_at_login(true) {
            tracing::warn!(error = %e, "cannot renew the start-at-login entry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_hidden_only_when_asked_and_signed_in() {
        let asked = Settings {
            start_minimised: true,
            ..Settings::default()
        };
        assert!(start_hidden(&asked, Phase::Ready));
        // Signing in needs the window.
        assert!(!start_hidden(&asked, Phase::SignedOut));
        assert!(!start_hidden(&asked, Phase::Setup));
        // The default shows the window, whatever the phase.
        for phase in [Phase::Ready, Phase::SignedOut, Phase::Setup] {
            assert!(!start_hidden(&Settings::default(), phase));
        }
        // Starting at login alone does not hide the window.
        let at_login = Settings {
            start_at_login: true,
            ..Settings::default()
        };
        assert!(!start_hidden(&at_login, Phase::Ready));
    }
}
