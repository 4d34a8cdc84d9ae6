//! What the desktop app remembers between starts, in `desktop.json` in its data directory: the
//! chosen server (or host mode and its port), the signed-in accounts and which one is shown, the
//! settings and the last open conversation. The message history itself lives in the client core's store (a profile
//! directory under the same data directory), so this file stays small and is rewritten whole.

use std::path::{Path, PathBuf};

use natter::protocol::ConvId;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::accounts::{AccountKey, SavedAccount};

/// The environment variable that overrides the data directory (tests run two profiles side by
/// side; a user can keep a portable profile).
pub const DATA_DIR_ENV: &str = "NATTER_DATA_DIR";

const FILE: &str = "desktop.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, TS)]
#[ts(export)]
pub enum Language {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

/// The user's settings (`Settings` in docs/ipc.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct Settings {
    pub notifications: bool,
    pub hide_message_text: bool,
    pub theme: Theme,
    pub language: Language,
    pub close_to_tray: bool,
    /// Start Natter when the user logs in to the desktop (its autostart entry, `startup`).
    /// Missing in a file from before this setting: off.
    #[serde(default)]
    pub start_at_login: bool,
    /// Start with the window hidden and only the tray icon showing (`startup::start_hidden`).
    #[serde(default)]
    pub start_minimised: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            notifications: true,
            hide_message_text: false,
            theme: Theme::System,
            language: Language::En,
            close_to_tray: true,
            start_at_login: false,
            start_minimised: false,
        }
    }
}

/// Everything persisted. Unknown or missing fields fall back to defaults so an older or newer
/// file never stops the app from starting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DesktopConfig {
    pub server_url: Option<String>,
    /// Set when the user chose to host: the next start hosts again on this port.
    pub host_port: Option<u16>,
    /// The host turned "Share on the network" on: the hosted server listens on the network
    /// and is advertised; off (a new profile), this computer only. Missing in a file from
    /// before the choice existed: on, as those versions always shared, so others who joined
    /// are not cut off by an upgrade.
    #[serde(default = "shared_before_the_choice")]
    pub host_shared: bool,
    /// The signed-in user on `server_url`; their profile (store and session token) is
    /// `profiles/<server>-<username>` under the data directory.
    pub username: Option<String>,
    pub settings: Settings,
    pub last_conversation: Option<ConvId>,
    /// Every account signed in to in this app, in the order they were added (the sidebar's
    /// order); the active one is `server_url` + `username`. Missing in a file from before there
    /// were several: the active account alone ([`DesktopConfig::load`] adds it).
    pub accounts: Vec<SavedAccount>,
}

fn shared_before_the_choice() -> bool {
    true
}

impl DesktopConfig {
    /// Reads the config from `dir`. A missing file is a fresh profile; an unreadable or corrupt
    /// one is logged and replaced by defaults (better than refusing to start).
    pub fn load(dir: &Path) -> Self {
        let mut cfg = Self::load_file(dir);
        if let Some(key) = cfg.active_account() {
            cfg.remember_account(key);
        }
        cfg
    }

    /// The account the window shows, if one is signed in.
    pub fn active_account(&self) -> Option<AccountKey> {
        Some(AccountKey {
            server_url: self.server_url.clone()?,
            username: self.username.clone()?,
        })
    }

    /// Adds `key` to the account list (at the end) unless it is there.
    pub fn remember_account(&mut self, key: AccountKey) {
        if !self.accounts.iter().any(|a| a.key == key) {
            self.accounts.push(SavedAccount {
                key,
                last_conversation: None,
            });
        }
    }

    /// The server once at `from` is at `to` now: the chosen server and the accounts on it move.
    pub fn move_server(&mut self, from: &url::Url, to: &str) {
        let at_from = |u: &str| url::Url::parse(u).is_ok_and(|u| &u == from);
        if self.server_url.as_deref().is_some_and(at_from) {
            self.server_url = Some(to.to_owned());
        }
        for account in &mut self.accounts {
            if at_from(&account.key.server_url) {
                account.key.server_url = to.to_owned();
            }
        }
    }

    /// Removes `key` from the account list (signed out, deleted, or replaced).
    pub fn forget_account(&mut self, key: &AccountKey) {
        self.accounts.retain(|a| &a.key != key);
    }

    fn load_file(dir: &Path) -> Self {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "corrupt desktop config; using defaults");
                Self::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read desktop config; using defaults");
                Self::default()
            }
        }
    }

    /// Writes atomically (temp file + rename) so a crash never leaves half a file; mode 0600
    /// because it says who uses the app and where they chat.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(tmp, dir.join(FILE))
    }
}

/// The data directory: `$NATTER_DATA_DIR` when set and not empty, else `fallback` (the app's XDG
/// data directory, from Tauri's path resolver).
pub fn data_dir(fallback: impl FnOnce() -> Option<PathBuf>) -> Option<PathBuf> {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => fallback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_match_the_ipc_contract() {
        assert_eq!(
            serde_json::to_value(Settings::default()).unwrap(),
            json!({"notifications": true, "hide_message_text": false, "theme": "system",
                   "language": "en", "close_to_tray": true, "start_at_login": false,
                   "start_minimised": false})
        );
        let zh: Settings = serde_json::from_value(json!({"notifications": false,
            "hide_message_text": true, "theme": "dark", "language": "zh-CN",
            "close_to_tray": false}))
        .unwrap();
        assert_eq!(zh.language, Language::ZhCn);
        assert_eq!(zh.theme, Theme::Dark);
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [
            json!({"notifications": true, "hide_message_text": false, "theme": "pink",
                   "language": "en", "close_to_tray": true}),
            json!({"notifications": true, "hide_message_text": false, "theme": "light",
                   "language": "fr", "close_to_tray": true}),
            json!({"notifications": "yes"}),
            json!({"notifications": true, "hide_message_text": false, "theme": "light",
                   "language": "en", "close_to_tray": true, "start_at_login": "yes"}),
            json!({"notifications": true, "hide_message_text": false, "theme": "light",
                   "language": "en", "close_to_tray": true, "start_minimized": true}),
        ] {
            assert!(serde_json::from_value::<Settings>(bad).is_err());
        }
    }

    #[test]
    fn start_settings_round_trip_and_default_to_off_in_older_files() {
        let dir = tempfile::tempdir().unwrap();
        // A file written before the start settings existed: both off, nothing else lost.
        std::fs::write(
            dir.path().join(FILE),
            br#"{"server_url": "http://127.0.0.1:1", "settings": {"notifications": false,
                "hide_message_text": false, "theme": "dark", "language": "en",
                "close_to_tray": true}}"#,
        )
        .unwrap();
        let old = DesktopConfig::load(dir.path());
        assert_eq!(old.server_url.as_deref(), Some("http://127.0.0.1:1"));
        assert!(old.accounts.is_empty(), "nobody was signed in");
        assert!(!old.settings.notifications);
        assert!(!old.settings.start_at_login && !old.settings.start_minimised);

        let mut cfg = old;
        cfg.settings.start_at_login = true;
        cfg.settings.start_minimised = true;
        cfg.save(dir.path()).unwrap();
        assert_eq!(DesktopConfig::load(dir.path()), cfg);
    }

    #[test]
    fn a_file_from_before_several_accounts_lists_its_signed_in_account() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            br#"{"server_url": "http://127.0.0.1:1/", "username": "alice", "last_conversation": 3}"#,
        )
        .unwrap();
        let mut cfg = DesktopConfig::load(dir.path());
        let alice = cfg.active_account().expect("alice is active");
        assert_eq!(cfg.accounts.len(), 1);
        assert_eq!(cfg.accounts[0].key, alice);
        // Remembering twice keeps one entry; forgetting removes it.
        cfg.remember_account(alice.clone());
        assert_eq!(cfg.accounts.len(), 1);
        cfg.save(dir.path()).unwrap();
        assert_eq!(DesktopConfig::load(dir.path()), cfg);
        cfg.forget_account(&alice);
        assert!(cfg.accounts.is_empty());
    }

    #[test]
    fn a_host_from_before_the_sharing_choice_stays_shared_and_a_new_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!DesktopConfig::load(dir.path()).host_shared);
        std::fs::write(
            dir.path().join(FILE),
            br#"{"server_url": "https://127.0.0.1:8686/", "host_port": 8686}"#,
        )
        .unwrap();
        assert!(DesktopConfig::load(dir.path()).host_shared);
        let cfg = DesktopConfig {
            host_port: Some(8686),
            ..Default::default()
        };
        cfg.save(dir.path()).unwrap();
        assert!(!DesktopConfig::load(dir.path()).host_shared);
    }

    #[test]
    fn round_trips_and_survives_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DesktopConfig::load(dir.path()), DesktopConfig::default());
        let cfg = DesktopConfig {
            server_url: Some("http://127.0.0.1:1".into()),
            host_port: Some(8686),
            last_conversation: Some(7),
            ..Default::default()
        };
        cfg.save(dir.path()).unwrap();
        assert_eq!(DesktopConfig::load(dir.path()), cfg);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "profile file must not be readable by others"
            );
        }
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert_eq!(DesktopConfig::load(dir.path()), DesktopConfig::default());
    }
}
