//! The accounts this app is signed in to at once: one per server and user, each with its own
//! profile (`natter::client::profile_dir_in`), its own client and its own connection, one of them
//! shown in the window (the active one). This module owns what an account is in the desktop
//! (its key, what is remembered of it, what the UI is told of it) and the unread book that
//! keeps a total per account; the running clients themselves live in [`crate::state::Shell`].

use std::collections::HashMap;

use natter::client::ConnectionState;
use natter::protocol::{ConvId, User};
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use url::Url;

/// Names one account: the server's address (as `join_server` normalised it) and the username.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountKey {
    pub server_url: String,
    pub username: String,
}

/// One signed-in account as `desktop.json` remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedAccount {
    #[serde(flatten)]
    pub key: AccountKey,
    /// The conversation that was open when the user last switched away from this account.
    #[serde(default)]
    pub last_conversation: Option<ConvId>,
}

/// `AccountInfo` of docs/ipc.md: one entry of the sidebar's account list.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct AccountInfo {
    pub server_url: String,
    /// What to show for the server: its host (and port when not the scheme's default).
    pub server_name: String,
    pub username: String,
    /// The account's profile as its client knows it; `null` when its client could not start
    /// (the local store could not be opened), so only the username is known.
    pub user: Option<User>,
    /// Unread messages in the account's conversations that are not set to `nothing`.
    pub unread: u32,
    /// The account the window shows.
    pub active: bool,
    pub connection: ConnectionState,
}

/// The server's name as the account list shows it: `chat.example.org`, `192.168.1.20:8686`.
pub fn server_name(server_url: &str) -> String {
    match Url::parse(server_url) {
        Ok(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => server_url.to_string(),
        },
        Err(_) => server_url.to_string(),
    }
}

/// Unread count and muted flag (level `nothing`) per conversation, per account, from the
/// clients' change events: totals without re-reading any list. Muted conversations never
/// count, as in the sidebar.
#[derive(Debug, Default)]
pub struct UnreadBook {
    accounts: HashMap<AccountKey, HashMap<ConvId, (u32, bool)>>,
}

impl UnreadBook {
    /// Records one conversation's count and muted flag (`None`: the conversation is gone).
    /// Returns whether the account's total changed.
    pub fn set(&mut self, account: &AccountKey, conv: ConvId, state: Option<(u32, bool)>) -> bool {
        let before = self.account_total(account);
        let convs = self.accounts.entry(account.clone()).or_default();
        match state {
            Some(s) => convs.insert(conv, s),
            None => convs.remove(&conv),
        };
        before != self.account_total(account)
    }

    /// The muted flag last recorded for a conversation (an unread change does not carry it).
    pub fn muted(&self, account: &AccountKey, conv: ConvId) -> bool {
        self.accounts
            .get(account)
            .and_then(|convs| convs.get(&conv))
            .is_some_and(|(_, muted)| *muted)
    }

    /// Replaces everything known of an account (its whole conversation list was read).
    /// Returns whether the account's total changed.
    pub fn replace(
        &mut self,
        account: &AccountKey,
        convs: impl IntoIterator<Item = (ConvId, (u32, bool))>,
    ) -> bool {
        let before = self.account_total(account);
        self.accounts
            .insert(account.clone(), convs.into_iter().collect());
        before != self.account_total(account)
    }

    /// The account was signed out or removed: its counts no longer count.
    pub fn forget(&mut self, account: &AccountKey) {
        self.accounts.remove(account);
    }

    pub fn account_total(&self, account: &AccountKey) -> u32 {
        self.accounts.get(account).map_or(0, |convs| {
            convs
                .values()
                .filter(|(_, muted)| !muted)
                .fold(0u32, |sum, (unread, _)| sum.saturating_add(*unread))
        })
    }

    /// Every account's unread messages together: what the title and the tray show, so a
    /// message for a background account is seen without switching to it.
    pub fn total(&self) -> u32 {
        self.accounts
            .keys()
            .fold(0u32, |sum, key| sum.saturating_add(self.account_total(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(server: &str, user: &str) -> AccountKey {
        AccountKey {
            server_url: server.into(),
            username: user.into(),
        }
    }

    #[test]
    fn server_names_are_host_and_port() {
        assert_eq!(
            server_name("http://192.168.1.20:8686/"),
            "192.168.1.20:8686"
        );
        assert_eq!(server_name("https://chat.example.org/"), "chat.example.org");
        // The scheme's default port is not shown; garbage is shown as it is, never dropped.
        assert_eq!(
            server_name("http://chat.example.org:80/"),
            "chat.example.org"
        );
        assert_eq!(server_name("not a url"), "not a url");
    }

    #[test]
    fn totals_are_kept_per_account_and_muted_conversations_do_not_count() {
        let a = key("http://a:1/", "alice");
        let b = key("http://b:1/", "alice");
        let mut book = UnreadBook::default();
        assert!(book.replace(&a, [(1, (2, false)), (2, (5, true))]));
        assert_eq!(book.account_total(&a), 2, "the muted 5 do not count");
        assert!(book.muted(&a, 2) && !book.muted(&a, 1) && !book.muted(&b, 2));
        // The same conversation id on another server is another conversation.
        assert!(book.set(&b, 1, Some((3, false))));
        assert_eq!((book.account_total(&b), book.total()), (3, 5));
        // A change that leaves the total alone says so (no event for it).
        assert!(!book.set(&a, 2, Some((9, true))));
        assert!(!book.set(&a, 1, Some((2, false))));
        assert!(book.set(&a, 1, None));
        assert_eq!(book.total(), 3);
        book.forget(&b);
        assert_eq!((book.account_total(&b), book.total()), (0, 0));
    }

    #[test]
    fn totals_saturate_instead_of_wrapping() {
        let a = key("http://a:1/", "alice");
        let b = key("http://b:1/", "bob");
        let mut book = UnreadBook::default();
        book.replace(&a, [(1, (u32::MAX, false)), (2, (1, false))]);
        book.set(&b, 1, Some((1, false)));
        assert_eq!((book.account_total(&a), book.total()), (u32::MAX, u32::MAX));
    }
}
