//! Server administration from the command line (`natter-server admin grant|revoke|list`): it
//! opens the store itself and changes it through the same write path as the server, so it
//! works whether the server runs or not (SQLite takes a second writer between the server's
//! commits; PostgreSQL is shared anyway).
//!
//! What a user may do is decided from the store at each action, so a grant or revoke takes
//! effect at once. Each running node reads the admins from the store every couple of seconds
//! ([`super::service::admin::follow_admins`]) and tells the user's sockets and those who share
//! a conversation with them.

use std::sync::Arc;

use super::store::{self, OpenOptions, Storage, StoreError, WriteOp, WriteOutcome};
use super::ServerConfig;

/// Make `username` an admin (`admin`) or no longer one; returns the stored username.
pub async fn set_admin(
    config: &ServerConfig,
    username: &str,
    admin: bool,
) -> Result<String, StoreError> {
    let store = open(config)?;
    let op = WriteOp::SetAdmin {
        username: username.to_string(),
        admin,
    };
    let outcome = store.write_then(op, |_| {}).await;
    shut(store).await;
    Ok(match outcome? {
        WriteOutcome::UserUpdated(row) => row.user.username,
        _ => username.to_string(),
    })
}

/// The server's admins' usernames, sorted.
pub async fn admins(config: &ServerConfig) -> Result<Vec<String>, StoreError> {
    let store = open(config)?;
    let snapshot = store.snapshot().await;
    shut(store).await;
    let mut names: Vec<String> = snapshot?
        .users
        .into_iter()
        .filter(|row| row.user.admin)
        .map(|row| row.user.username)
        .collect();
    names.sort();
    Ok(names)
}

fn open(config: &ServerConfig) -> Result<Arc<dyn Storage>, StoreError> {
    let location = config
        .store
        .clone()
        .unwrap_or_else(|| store::StoreLocation::in_data_dir(&config.data_dir));
    let (store, _) = store::open(&location, OpenOptions::default())?;
    Ok(store)
}

/// Commit what is queued and stop the writer (blocking, so off the async threads).
async fn shut(store: Arc<dyn Storage>) {
    let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
}
