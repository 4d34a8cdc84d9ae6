//! Run by its host, from a running [`Client`] (docs/protocol.md, "Run by its host"): room
//! membership (adding people, which is how a private room is entered; a moderator's remove and
//! ban) over the socket, and the admins' HTTP calls (invites, approving accounts, bans). What
//! follows from them reaches the client as the events it already knows: `conversation_added`
//! and `conversation_removed`, `membership`, and `user_updated` for a changed role. The CLI
//! and the desktop only call these.

use crate::protocol::{ClientFrame, ConvId, Invite, InviteRequest, PendingUser, User};

use super::http::{self, AccountAction};
use super::{Client, Result};

impl Client {
    /// Whether the signed-in user is one of the server's admins (as last heard from it).
    pub fn is_admin(&self) -> bool {
        self.user().admin
    }

    /// Adds `username` to room `conv` (any member may; the way into a private room).
    pub async fn add_member(&self, conv: ConvId, username: &str) -> Result<()> {
        let username = username.to_owned();
        self.request(move |id| ClientFrame::AddMember { id, conv, username })
            .await?;
        Ok(())
    }

    /// Removes `username` from room `conv`, which the user moderates; with `ban`, for good.
    pub async fn remove_member(&self, conv: ConvId, username: &str, ban: bool) -> Result<()> {
        let username = username.to_owned();
        self.request(move |id| ClientFrame::RemoveMember {
            id,
            conv,
            username,
            ban,
        })
        .await?;
        Ok(())
    }

    /// Makes an invite valid for `expires_in` seconds (None: the server's default, 7 days);
    /// the answer carries its code, which is never shown again.
    pub async fn create_invite(&self, expires_in: Option<u64>) -> Result<Invite> {
        let req = InviteRequest { expires_in };
        http::create_invite(&self.inner.config.server, &self.inner.token, &req).await
    }

    /// The live invites, oldest first (without codes).
    pub async fn invites(&self) -> Result<Vec<Invite>> {
        Ok(http::invites(&self.inner.config.server, &self.inner.token)
            .await?
            .invites)
    }

    /// Revokes the live invite `id`.
    pub async fn revoke_invite(&self, id: i64) -> Result<()> {
        http::revoke_invite(&self.inner.config.server, &self.inner.token, id).await
    }

    /// The accounts waiting for approval, oldest first.
    pub async fn pending_accounts(&self) -> Result<Vec<PendingUser>> {
        Ok(http::pending(&self.inner.config.server, &self.inner.token)
            .await?
            .users)
    }

    /// Approves a waiting account: it joins `general` and may sign in.
    pub async fn approve(&self, username: &str) -> Result<User> {
        http::approve(&self.inner.config.server, &self.inner.token, username).await
    }

    /// Rejects a waiting account, bans an account from the server, or lifts a ban.
    pub async fn account_action(&self, action: AccountAction, username: &str) -> Result<()> {
        http::account_action(
            &self.inner.config.server,
            &self.inner.token,
            action,
            username,
        )
        .await
    }
}
