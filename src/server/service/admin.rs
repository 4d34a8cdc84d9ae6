//! Run by its host, the admins' side (docs/protocol.md, "Run by its host"): making, listing and
//! revoking invites, and approving or rejecting accounts that wait. Every write checks in the
//! store's transaction that the caller is an admin (so a role changed by `natter-server admin`
//! counts at once); the lists check it with a read first. A running node also follows the
//! roles `natter-server admin` changes ([`follow_admins`]), so its users' `admin` and
//! `moderator` flags do too.

use std::collections::HashSet;
use std::sync::Weak;

use crate::protocol::{limits, ErrorCode, Invite, InviteList, InviteRequest, PendingList, User};

use super::super::auth;
use super::super::store::{rules, WriteOp, WriteOutcome};
use super::super::Shared;
use super::accounts::Authed;
use super::{write_for_call, ServiceError};

fn unexpected(outcome: WriteOutcome) -> ServiceError {
    tracing::error!(
        ?outcome,
        "an admin write answered with another write's outcome"
    );
    ServiceError::refused(ErrorCode::Internal, "internal server error")
}

/// Follow the admin roles in the store until the server stops: every `admin_poll`, read the
/// admins and hand the hub those whose role changed since the last look
/// ([`Hub::set_admin_roles`](super::super::hub::Hub::set_admin_roles)).
///
/// `natter-server admin grant|revoke` writes the store from another process, which no bus
/// reaches (a standalone server has none, and the command needs none), so each node reads the
/// store itself every couple of seconds (one read of the users table for its few admins). Only
/// changes between two reads count, never a read against memory: a role an event brought (the
/// first account's) may be newer than a read that raced it.
pub(crate) async fn follow_admins(shared: Weak<Shared>) {
    let Some((every, mut stopping, mut known)) = shared.upgrade().map(|s| {
        let known: HashSet<_> = s.hub.admins();
        (s.config.admin_poll, s.stopping.subscribe(), known)
    }) else {
        return;
    };
    while let Some(shared) = super::periodically(&shared, every, &mut stopping).await {
        match shared.store.admins().await {
            Ok(admins) => {
                let now: HashSet<_> = admins.into_iter().collect();
                let granted = now.difference(&known).map(|u| (*u, true));
                let revoked = known.difference(&now).map(|u| (*u, false));
                let changed: Vec<_> = granted.chain(revoked).collect();
                if !changed.is_empty() {
                    tracing::info!(?changed, "admin roles changed in the store");
                    shared.hub.set_admin_roles(&changed);
                }
                known = now;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the admins from the store"),
        }
    }
}

/// Refuse a caller who is not an admin now.
async fn require_admin(shared: &Shared, authed: &Authed) -> Result<(), ServiceError> {
    let standing = shared.store.standing(authed.user).await?;
    rules::require_admin(standing.map(|s| s.admin))?;
    Ok(())
}

/// Make an invite; the answer carries its code, which the server never shows again.
pub async fn create_invite(
    shared: &Shared,
    authed: &Authed,
    req: InviteRequest,
) -> Result<Invite, ServiceError> {
    let secs = req.expires_in.unwrap_or(limits::INVITE_DEFAULT_SECS);
    if !limits::INVITE_SECS.contains(&secs) {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            format!(
                "expires_in is {}-{} seconds",
                limits::INVITE_SECS.start(),
                limits::INVITE_SECS.end()
            ),
        ));
    }
    // A code is a token: 256 random bits, kept only as its hash.
    let (code, hash) = auth::new_token();
    let now = shared.clock.now_ms();
    let expires_at = now + secs as i64 * 1000;
    let op = WriteOp::CreateInvite {
        by: authed.user,
        hash,
        now,
        expires_at,
    };
    match write_for_call(shared, op).await? {
        WriteOutcome::InviteCreated { id, created_by } => Ok(Invite {
            id,
            code: Some(code),
            created_by,
            created_at: now,
            expires_at,
        }),
        other => Err(unexpected(other)),
    }
}

/// The live invites (without their codes).
pub async fn invites(shared: &Shared, authed: &Authed) -> Result<InviteList, ServiceError> {
    require_admin(shared, authed).await?;
    let invites = shared.store.invites(shared.clock.now_ms()).await?;
    Ok(InviteList { invites })
}

/// Revoke a live invite (`not_found` for any other id).
pub async fn revoke_invite(shared: &Shared, authed: &Authed, id: i64) -> Result<(), ServiceError> {
    let op = WriteOp::RevokeInvite {
        by: authed.user,
        id,
        now: shared.clock.now_ms(),
    };
    write_for_call(shared, op).await?;
    Ok(())
}

/// The accounts waiting for approval.
pub async fn pending(shared: &Shared, authed: &Authed) -> Result<PendingList, ServiceError> {
    require_admin(shared, authed).await?;
    let users = shared.store.pending_users().await?;
    Ok(PendingList { users })
}

/// Approve a waiting account: it joins `general` (its members hear it) and may sign in.
pub async fn approve(
    shared: &Shared,
    authed: &Authed,
    username: String,
) -> Result<User, ServiceError> {
    let op = WriteOp::Approve {
        by: authed.user,
        username,
    };
    match write_for_call(shared, op).await? {
        WriteOutcome::Registered(row) => Ok(row.user),
        other => Err(unexpected(other)),
    }
}

/// Ban an account from the server (`banned`), or lift the ban. A ban revokes its sessions: its
/// sockets and event streams close at once (4005) on every node, and it cannot sign in.
pub async fn set_banned(
    shared: &Shared,
    authed: &Authed,
    username: String,
    banned: bool,
) -> Result<(), ServiceError> {
    let op = WriteOp::SetBanned {
        by: authed.user,
        username,
        banned,
        now: shared.clock.now_ms(),
    };
    write_for_call(shared, op).await?;
    Ok(())
}

/// Reject a waiting account: it is deleted and its name is free again.
pub async fn reject(
    shared: &Shared,
    authed: &Authed,
    username: String,
) -> Result<(), ServiceError> {
    let op = WriteOp::Reject {
        by: authed.user,
        username,
    };
    write_for_call(shared, op).await?;
    Ok(())
}
