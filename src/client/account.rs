//! Your account, from a running [`Client`]: change the profile and the password, list and
//! revoke sessions, delete the account (docs/protocol.md, "Your account"), and export the
//! history ([`super::export`]). The CLI and the desktop only call these.

use std::path::Path;

use crate::protocol::{
    limits, ClientFrame, DeleteAccountRequest, PasswordRequest, ProfileRequest, Reply, SessionInfo,
    User,
};

use super::export::{self, Export, ExportFormat, ExportSummary, ExportedConversation};
use super::{http, now_ms, Client, ClientError, ClientEvent, Result};

impl Client {
    fn server(&self) -> &url::Url {
        &self.inner.config.server
    }

    /// Changes the display name and/or the avatar (None keeps it); returns the profile as the
    /// server now has it, already stored and announced ([`ClientEvent::UserUpdated`]).
    pub async fn set_profile(
        &self,
        display_name: Option<String>,
        avatar: Option<String>,
    ) -> Result<User> {
        let req = ProfileRequest {
            display_name,
            avatar,
        };
        let user = http::set_profile(self.server(), &self.inner.token, &req).await?;
        let stored = user.clone();
        self.db(move |s| s.upsert_user(&stored)).await?;
        *self
            .inner
            .shared
            .profile
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = user.clone();
        self.emit(ClientEvent::UserUpdated(user.clone()));
        Ok(user)
    }

    /// Changes the password; with `sign_out_others`, every other session of the account ends.
    pub async fn change_password(
        &self,
        current: &str,
        new: &str,
        sign_out_others: bool,
    ) -> Result<()> {
        let req = PasswordRequest {
            current_password: current.to_owned(),
            new_password: new.to_owned(),
            sign_out_others,
        };
        http::change_password(self.server(), &self.inner.token, &req).await
    }

    /// The account's live sessions, newest first; `current` marks this one.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        Ok(http::sessions(self.server(), &self.inner.token)
            .await?
            .sessions)
    }

    /// Revokes one of the account's sessions by its id; its sockets close.
    pub async fn revoke_session(&self, id: &str) -> Result<()> {
        http::revoke_session(self.server(), &self.inner.token, id).await
    }

    /// Deletes the account for good (see docs/protocol.md, "Deleting an account"), then forgets
    /// the session here and stops the client. The local history stays in the profile.
    pub async fn delete_account(&self, password: &str) -> Result<()> {
        let req = DeleteAccountRequest {
            password: password.to_owned(),
        };
        http::delete_account(self.server(), &self.inner.token, &req).await?;
        self.db(|s| s.clear_session()).await?;
        self.shutdown().await;
        Ok(())
    }

    /// Every conversation the user is in with every message, paged from the server's history
    /// (so it is complete even where the local store is not). Needs the server.
    pub async fn export(&self) -> Result<Export> {
        let convs = self.conversations().await?;
        let mut conversations = Vec::with_capacity(convs.len());
        let mut names: Vec<String> = Vec::new();
        for summary in convs {
            let messages = self.all_messages(summary.id).await?;
            names.extend(messages.iter().map(|m| m.sender.clone()));
            names.extend(summary.peer.iter().map(|p| p.username.clone()));
            conversations.push(ExportedConversation {
                id: summary.id,
                kind: summary.kind,
                name: summary.name,
                messages,
            });
        }
        conversations.sort_by_key(|c| c.id);
        names.sort_unstable();
        names.dedup();
        let me = self.user();
        names.retain(|n| *n != me.username);
        let users = self
            .db(move |s| {
                let mut found = Vec::with_capacity(names.len());
                for name in &names {
                    found.extend(s.user(name)?);
                }
                Ok(found)
            })
            .await?;
        Ok(Export {
            format: export::EXPORT_KIND.into(),
            version: export::EXPORT_VERSION,
            exported_at: now_ms(),
            server: self.server().to_string(),
            user: me,
            users,
            conversations,
        })
    }

    /// Every message of `conv`, oldest first, from the server's history pages.
    async fn all_messages(
        &self,
        conv: crate::protocol::ConvId,
    ) -> Result<Vec<crate::protocol::Message>> {
        let mut all: Vec<crate::protocol::Message> = Vec::new();
        loop {
            let after = all.last().map_or(0, |m| m.seq);
            let reply = self
                .request(move |id| ClientFrame::History {
                    id,
                    conv,
                    before: None,
                    after: Some(after),
                    limit: limits::MAX_PAGE,
                })
                .await;
            match reply {
                Ok(Reply::History {
                    messages, has_more, ..
                }) => {
                    let progressed = !messages.is_empty();
                    all.extend(messages);
                    if !has_more || !progressed {
                        return Ok(all);
                    }
                }
                Ok(other) => {
                    return Err(ClientError::Server(format!(
                        "unexpected answer to history: {other:?}"
                    )))
                }
                Err(ClientError::Offline(e)) => {
                    return Err(ClientError::Offline(format!(
                        "exporting needs the server, to include every message: {e}"
                    )))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Exports the history as `format` to `path`, written private (0600).
    pub async fn export_to(&self, format: ExportFormat, path: &Path) -> Result<ExportSummary> {
        let export = self.export().await?;
        let text = export.render(format);
        let target = path.to_path_buf();
        tokio::task::spawn_blocking(move || export::write_private(&target, &text))
            .await
            .map_err(|e| ClientError::Internal(format!("export writer: {e}")))?
            .map_err(|e| ClientError::Invalid(format!("cannot write {}: {e}", path.display())))?;
        Ok(ExportSummary {
            path: path.display().to_string(),
            conversations: export.conversations.len() as u32,
            messages: export.message_count() as u32,
        })
    }
}
