//! The IPC commands of docs/ipc.md. Each is a thin call into the client core (or the server for
//! host mode) through [`Shell`]; argument checks that the core does not do (exactly one target
//! for `send`, sane limits) happen here so bad input gets a clear `invalid` error. Every command
//! that reads the local store is `async`: Tauri runs those off the main thread, and the store
//! itself runs on the client core's store thread.

use natter::client::export::{ExportFormat, ExportSummary};
use natter::client::http::AccountAction;
use natter::client::invitation::InviteLink;
use natter::client::{ConversationSummary, LocalMessage, SearchHit, Target};
use natter::protocol::{
    Attachment, ConvId, Dnd, Invite, Member, NotifyLevel, PendingUser, RoomInfo, Seq, SessionInfo,
    User,
};
use serde::Serialize;
use std::sync::Arc;
use ts_rs::TS;

use tauri::{ipc::Invoke, Manager, Runtime, State};

use crate::accounts::AccountInfo;
use crate::config::Settings;
use crate::error::{CmdResult, CommandError};
use crate::host::DEFAULT_PORT;
use crate::state::{AppState, NewInvite, Phase, Shell, StoreRepair};

/// Page size when the UI does not say.
const DEFAULT_HISTORY_LIMIT: u32 = 50;
const DEFAULT_SEARCH_LIMIT: u32 = 50;

/// The handler with every command, for `Builder::invoke_handler`. A command that arrives while
/// the profile is still being restored (the page loads beside the restore, see `crate::init`)
/// waits for it on the async runtime, so no command answers from a half-started shell (e.g.
/// `app_state` saying "signed out" for an account whose store is still opening).
pub fn handler<R: Runtime>() -> impl Fn(Invoke<R>) -> bool + Send + Sync + 'static {
    let commands = Arc::new(every_command::<R>());
    move |invoke: Invoke<R>| {
        let shell = match invoke.message.webview_ref().try_state::<Shell>() {
            Some(shell) if !shell.is_restored() => shell.inner().clone(),
            _ => return commands(invoke),
        };
        let commands = commands.clone();
        let resolver = invoke.resolver.clone();
        let name = invoke.message.command().to_string();
        tauri::async_runtime::spawn(async move {
            shell.restored().await;
            if !commands(invoke) {
                // What Tauri answers for a command no handler knows.
                resolver.reject(format!("Command {name} not found"));
            }
        });
        true
    }
}

/// Every command of docs/ipc.md, as Tauri dispatches them.
fn every_command<R: Runtime>() -> impl Fn(Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        app_state,
        boot,
        listening,
        host_server,
        join_server,
        probe_certificate,
        trust_certificate,
        discover_servers,
        register,
        login,
        logout,
        conversations,
        history,
        send,
        send_files,
        stage_file,
        cancel_upload,
        thumbnail,
        open_file,
        launch_file,
        save_file,
        reply,
        edit_message,
        delete_message,
        react,
        retry,
        mark_read,
        search,
        rooms,
        create_room,
        add_member,
        remove_member,
        join_room,
        leave_room,
        members,
        watch_presence,
        users,
        typing,
        set_visible_conversation,
        set_level,
        set_dnd,
        dnd,
        get_settings,
        set_settings,
        repair_store,
        reconnect_now,
        diagnostics,
        set_profile,
        change_password,
        sessions,
        revoke_session,
        delete_account,
        export_history,
        accounts,
        add_account,
        switch_account,
        set_sharing,
        read_invite,
        create_invite,
        invites,
        revoke_invite,
        pending_accounts,
        approve_account,
        reject_account,
    ]
}

#[tauri::command]
pub fn app_state(shell: State<'_, Shell>) -> AppState {
    shell.app_state()
}

/// `boot`'s answer: what the window's first screen shows, in one round trip.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct Boot {
    pub state: AppState,
    /// The shown account's conversations (sorted by `last_activity` desc) from its local store;
    /// `null` when no account is shown or its store could not be read.
    pub conversations: Option<Vec<ConversationSummary>>,
    /// The newest page of `state.last_conversation` from the local store (as `history` without
    /// `beforeSeq`); `null` when there is none, it is not in `conversations`, or it could not be
    /// read (the window then asks `history` itself, which reports the error).
    pub page: Option<Vec<LocalMessage>>,
    /// The people `page` names (senders, quoted senders, who reacted) as the local store last
    /// heard of them, so the first screen shows their names and avatars before the user list
    /// comes from the server (or when it cannot: offline). Those the store never heard of are
    /// left out; empty without a page.
    pub people: Vec<User>,
}

/// The window's start-up call: `app_state`, `conversations` and the reopened conversation's
/// newest page together, so the signed-in screen is built after one IPC round trip instead of
/// three. Read from the local store only, so the server's state does not hold it up. The main
/// window's page usually carries this answer already (`first_screen`); a page without it asks.
#[tauri::command]
pub async fn boot(shell: State<'_, Shell>, limit: Option<u32>) -> CmdResult<Boot> {
    Ok(read_boot(&shell, limit.unwrap_or(DEFAULT_HISTORY_LIMIT)).await)
}

/// `boot`'s answer for a page of `limit` messages (see [`boot`]); never fails.
pub async fn read_boot(shell: &Shell, limit: u32) -> Boot {
    let state = shell.app_state();
    let client = match state.phase {
        Phase::Ready => shell.client(),
        Phase::Setup | Phase::SignedOut => None,
    };
    let Some(client) = client else {
        return Boot {
            state,
            conversations: None,
            page: None,
            people: Vec::new(),
        };
    };
    let conversations = client
        .conversations()
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "boot: cannot read the conversations"))
        .ok();
    let reopened = state
        .last_conversation
        .filter(|last| conversations.iter().flatten().any(|c| c.id == *last));
    let page = match reopened {
        Some(conv) => client
            .history(conv, None, limit)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, conv, "boot: cannot read the page"))
            .ok(),
        None => None,
    };
    let people = match page.as_deref().map(named_in) {
        Some(names) if !names.is_empty() => client
            .known_users(names)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "boot: cannot read the page's people"))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Boot {
        state,
        conversations,
        page,
        people,
    }
}

/// Everyone `page` names, once each: senders, quoted senders and who reacted.
fn named_in(page: &[LocalMessage]) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for m in page {
        names.insert(m.sender.clone());
        names.extend(m.reply_to.as_ref().and_then(|q| q.sender.clone()));
        names.extend(m.reactions.iter().flat_map(|r| r.users.iter().cloned()));
    }
    names.into_iter().collect()
}

/// The page's event listeners are up: the events held since its HTML was served (the page
/// carried its first screen, see `first_screen`) are emitted now, in order, and from here on
/// as they happen. `false` when some were dropped ([`crate::first_screen::MAX_HELD`]): the page
/// then reads its whole state again. `true` when nothing was held.
#[tauri::command]
pub fn listening<R: Runtime>(app: tauri::AppHandle<R>) -> bool {
    match app.try_state::<crate::first_screen::EventGate>() {
        Some(gate) => gate.release(|event| crate::state::send_event(&app, event)),
        None => true,
    }
}

#[tauri::command]
pub async fn host_server(shell: State<'_, Shell>, port: Option<u16>) -> CmdResult<AppState> {
    shell.host_server(port.unwrap_or(DEFAULT_PORT)).await
}

#[tauri::command]
pub async fn join_server(shell: State<'_, Shell>, url: String) -> CmdResult<AppState> {
    shell.join_server(&url).await
}

/// The fingerprint of the certificate the https:// server at `url` presents (nothing is sent
/// to it), for the person to compare with the one on the host's screen.
#[tauri::command]
pub async fn probe_certificate(url: String) -> CmdResult<String> {
    let url = crate::state::parse_server_url(&url)?;
    Ok(natter::client::trust::probe(&url).await?.to_string())
}

/// The person confirmed `fingerprint` for the server at `url`: trusted from now on if the
/// server presents exactly that certificate (`certificate_changed` otherwise); the profile of
/// the account then signed in there keeps it.
#[tauri::command]
pub async fn trust_certificate(url: String, fingerprint: String) -> CmdResult<()> {
    let url = crate::state::parse_server_url(&url)?;
    let fingerprint: natter::tls::Fingerprint = fingerprint
        .parse()
        .map_err(|e: natter::tls::BadFingerprint| CommandError::invalid(e.to_string()))?;
    natter::client::trust::confirm(&url, fingerprint).await?;
    Ok(())
}

/// The Natter hosts heard on the network within about two seconds (mDNS), to join by a click.
#[tauri::command]
pub async fn discover_servers() -> CmdResult<Vec<natter::discovery::FoundHost>> {
    natter::discovery::browse(std::time::Duration::from_secs(2))
        .await
        .map_err(|e| CommandError::new(crate::error::ErrorCode::Offline, e.to_string()))
}

/// `invite`: a code from `read_invite` (required on an invite-only server such as a host's).
#[tauri::command]
pub async fn register(
    shell: State<'_, Shell>,
    username: String,
    password: String,
    display_name: String,
    avatar: String,
    invite: Option<String>,
) -> CmdResult<AppState> {
    shell
        .register(username, password, display_name, avatar, invite)
        .await
}

#[tauri::command]
pub async fn login(
    shell: State<'_, Shell>,
    username: String,
    password: String,
) -> CmdResult<AppState> {
    shell.login(username, password).await
}

#[tauri::command]
pub async fn logout(shell: State<'_, Shell>) -> CmdResult<AppState> {
    shell.logout().await
}

#[tauri::command]
pub async fn conversations(shell: State<'_, Shell>) -> CmdResult<Vec<ConversationSummary>> {
    Ok(shell.require_client()?.conversations().await?)
}

#[tauri::command]
pub async fn history(
    shell: State<'_, Shell>,
    conv: ConvId,
    before_seq: Option<Seq>,
    limit: Option<u32>,
) -> CmdResult<Vec<LocalMessage>> {
    if before_seq.is_some_and(|s| s < 1) {
        return Err(CommandError::invalid("beforeSeq must be at least 1"));
    }
    let client = shell.require_client()?;
    Ok(client
        .history(conv, before_seq, limit.unwrap_or(DEFAULT_HISTORY_LIMIT))
        .await?)
}

#[tauri::command]
pub async fn send(
    shell: State<'_, Shell>,
    conv: Option<ConvId>,
    to: Option<String>,
    text: String,
) -> CmdResult<String> {
    let target = Target::from_fields(conv, to).map_err(CommandError::invalid)?;
    let client = shell.require_client()?;
    // The message itself reaches the UI once, as the `natter://message` event (added).
    Ok(client.send(target, &text).await?.local_id)
}

/// Queues a message carrying the files at `paths` (chosen, dropped, or staged by `stage_file`)
/// with `text` as its caption (may be empty). Like `send`: the `local_id` comes back, the
/// message itself as `natter://message` added (pending, with `uploads`), upload progress as
/// `natter://upload`, then `updated`.
#[tauri::command]
pub async fn send_files(
    shell: State<'_, Shell>,
    conv: Option<ConvId>,
    to: Option<String>,
    paths: Vec<String>,
    text: String,
) -> CmdResult<String> {
    let target = Target::from_fields(conv, to).map_err(CommandError::invalid)?;
    let paths: Vec<std::path::PathBuf> = paths.into_iter().map(Into::into).collect();
    let client = shell.require_client()?;
    Ok(client.send_files(target, &paths, &text).await?.local_id)
}

/// The header naming staged bytes (percent-encoded, as `encodeURIComponent` makes it).
pub const FILE_NAME_HEADER: &str = "natter-file-name";

/// Bytes the UI holds (a pasted image, a file from the page's picker), sent as the raw body
/// with their name in [`FILE_NAME_HEADER`], written as a private file in the profile for
/// `send_files`; returns its path. `invalid` for a body that is not raw bytes, empty or over
/// the upload limit (checked before writing), or a missing name.
#[tauri::command]
pub async fn stage_file(
    shell: State<'_, Shell>,
    request: tauri::ipc::Request<'_>,
) -> CmdResult<String> {
    let tauri::ipc::InvokeBody::Raw(bytes) = request.body() else {
        return Err(CommandError::invalid("send the file's bytes as the body"));
    };
    let name = request
        .headers()
        .get(FILE_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| CommandError::invalid(format!("no {FILE_NAME_HEADER} header")))?;
    let name = crate::files::decode_name(name)?;
    let client = shell.require_client()?;
    // Staged files still waiting in the outbox are kept by the sweep of old ones.
    let keep: Vec<std::path::PathBuf> = client
        .outbox()
        .await?
        .iter()
        .flat_map(|m| m.uploads.iter().map(|f| f.path.clone().into()))
        .collect();
    let profile = client.config().profile_dir.clone();
    let bytes = bytes.clone();
    let path = tauri::async_runtime::spawn_blocking(move || {
        crate::files::stage(&profile, &name, &bytes, &keep)
    })
    .await
    .map_err(|e| CommandError::internal(e.to_string()))??;
    Ok(path.to_string_lossy().into_owned())
}

/// Takes a pending or failed message (one with files, while they upload) out of the outbox;
/// its upload stops. `not_found` when it is not in the outbox (already sent).
#[tauri::command]
pub async fn cancel_upload(shell: State<'_, Shell>, local_id: String) -> CmdResult<()> {
    Ok(shell.require_client()?.cancel(&local_id).await?)
}

/// A `natter-file:` URL of `file`'s thumbnail for an `<img>` (downloaded into the profile's
/// cache first when not there). `not_found` for a file without one (not an image).
#[tauri::command]
pub async fn thumbnail(shell: State<'_, Shell>, file: Attachment) -> CmdResult<String> {
    let client = shell.require_client()?;
    crate::files::client_url(&client, &client.thumbnail(&file).await?)
}

/// A `natter-file:` URL of `file` itself (downloaded into the cache first when not there), for
/// the full view of an image.
#[tauri::command]
pub async fn open_file(shell: State<'_, Shell>, file: Attachment) -> CmdResult<String> {
    let client = shell.require_client()?;
    crate::files::client_url(&client, &client.open_file(&file).await?)
}

/// Opens `file` (downloaded into the cache first when not there) in the desktop's default
/// application for its type; returns its local path.
#[tauri::command]
pub async fn launch_file(shell: State<'_, Shell>, file: Attachment) -> CmdResult<String> {
    let path = shell.require_client()?.open_file(&file).await?;
    tauri_plugin_opener::open_path(&path, None::<&str>)
        .map_err(|e| CommandError::internal(format!("cannot open {}: {e}", file.name)))?;
    Ok(path.to_string_lossy().into_owned())
}

/// Saves a copy of `file` in `dir` (default: the user's Downloads folder, or the data directory
/// when there is none; made when missing) under its safe name, never over another file
/// (`name (2).ext`); returns the new path.
#[tauri::command]
pub async fn save_file(
    shell: State<'_, Shell>,
    file: Attachment,
    dir: Option<String>,
) -> CmdResult<String> {
    let client = shell.require_client()?;
    let folder = dir.map_or_else(|| downloads_dir(&shell), Into::into);
    tokio::fs::create_dir_all(&folder).await?;
    Ok(client
        .save_file(&file, &folder)
        .await?
        .to_string_lossy()
        .into_owned())
}

/// Where saved files and exports go: the user's Downloads folder, else the data directory.
fn downloads_dir(shell: &Shell) -> std::path::PathBuf {
    directories::UserDirs::new()
        .and_then(|d| d.download_dir().map(std::path::Path::to_path_buf))
        .unwrap_or_else(|| shell.data_dir().to_path_buf())
}

/// A reply to message `reply_to` of `conv`: a message like `send`'s (its `local_id` comes back,
/// the message itself as `natter://message` added), quoting its target.
#[tauri::command]
pub async fn reply(
    shell: State<'_, Shell>,
    conv: ConvId,
    reply_to: Seq,
    text: String,
) -> CmdResult<String> {
    let reply_to = message_seq("replyTo", reply_to)?;
    let reply = shell.require_client()?.reply(conv, reply_to, &text).await?;
    Ok(reply.local_id)
}

/// Edits the user's message `seq` of `conv` to `text`. Returns the action's `local_id`; the
/// target comes back as `natter://message` updated once committed, or `natter://action-failed`.
#[tauri::command]
pub async fn edit_message(
    shell: State<'_, Shell>,
    conv: ConvId,
    seq: Seq,
    text: String,
) -> CmdResult<String> {
    let client = shell.require_client()?;
    Ok(client.edit(conv, message_seq("seq", seq)?, &text).await?)
}

/// Deletes the user's message `seq` of `conv` (see `edit_message`); it becomes a tombstone.
#[tauri::command]
pub async fn delete_message(shell: State<'_, Shell>, conv: ConvId, seq: Seq) -> CmdResult<String> {
    let seq = message_seq("seq", seq)?;
    Ok(shell.require_client()?.delete(conv, seq).await?)
}

/// Adds (`on`) or takes back the user's reaction `emoji` on message `seq` of `conv` (see
/// `edit_message`).
#[tauri::command]
pub async fn react(
    shell: State<'_, Shell>,
    conv: ConvId,
    seq: Seq,
    emoji: String,
    on: bool,
) -> CmdResult<String> {
    let seq = message_seq("seq", seq)?;
    Ok(shell.require_client()?.react(conv, seq, &emoji, on).await?)
}

/// A message's seq as an action's target: sent messages are numbered from 1.
fn message_seq(name: &str, seq: Seq) -> CmdResult<Seq> {
    if seq < 1 {
        return Err(CommandError::invalid(format!("{name} must be at least 1")));
    }
    Ok(seq)
}

#[tauri::command]
pub async fn retry(shell: State<'_, Shell>, local_id: String) -> CmdResult<()> {
    // The message's new state reaches the UI as a `natter://message` event (updated).
    shell.require_client()?.retry(&local_id).await?;
    Ok(())
}

#[tauri::command]
pub async fn mark_read(shell: State<'_, Shell>, conv: ConvId, seq: Seq) -> CmdResult<()> {
    if seq < 0 {
        return Err(CommandError::invalid("seq must not be negative"));
    }
    Ok(shell.require_client()?.mark_read(conv, seq).await?)
}

#[tauri::command]
pub async fn search(
    shell: State<'_, Shell>,
    query: String,
    conv: Option<ConvId>,
    limit: Option<u32>,
) -> CmdResult<Vec<SearchHit>> {
    if query.trim().is_empty() {
        return Ok(Vec::new());
    }
    let client = shell.require_client()?;
    Ok(client
        .search(&query, conv, limit.unwrap_or(DEFAULT_SEARCH_LIMIT))
        .await?)
}

#[tauri::command]
pub async fn rooms(shell: State<'_, Shell>) -> CmdResult<Vec<RoomInfo>> {
    Ok(shell.online_client().await?.rooms().await?)
}

/// `private`: a room only its members know of, entered when a member adds someone.
#[tauri::command]
pub async fn create_room(
    shell: State<'_, Shell>,
    name: String,
    private: Option<bool>,
) -> CmdResult<ConversationSummary> {
    let client = shell.online_client().await?;
    Ok(if private.unwrap_or(false) {
        client.create_private_room(&name).await?
    } else {
        client.create_room(&name).await?
    })
}

/// Adds `username` to room `conv` (any member may; the way into a private room).
#[tauri::command]
pub async fn add_member(shell: State<'_, Shell>, conv: ConvId, username: String) -> CmdResult<()> {
    Ok(shell
        .online_client()
        .await?
        .add_member(conv, &username)
        .await?)
}

/// A room moderator removes `username` from room `conv`; with `ban`, for good.
#[tauri::command]
pub async fn remove_member(
    shell: State<'_, Shell>,
    conv: ConvId,
    username: String,
    ban: bool,
) -> CmdResult<()> {
    let client = shell.online_client().await?;
    Ok(client.remove_member(conv, &username, ban).await?)
}

#[tauri::command]
pub async fn join_room(shell: State<'_, Shell>, name: String) -> CmdResult<ConversationSummary> {
    Ok(shell.online_client().await?.join_room(&name).await?)
}

#[tauri::command]
pub async fn leave_room(shell: State<'_, Shell>, conv: ConvId) -> CmdResult<()> {
    Ok(shell.online_client().await?.leave_room(conv).await?)
}

#[tauri::command]
pub async fn members(shell: State<'_, Shell>, conv: ConvId) -> CmdResult<Vec<Member>> {
    Ok(shell.online_client().await?.members(conv).await?)
}

#[tauri::command]
pub async fn users(shell: State<'_, Shell>) -> CmdResult<Vec<Member>> {
    Ok(shell.online_client().await?.users().await?)
}

/// Watch the presence of the users the window shows (the open room's members, the people
/// list), replacing the last set; returns those online now. `natter://online` follows.
#[tauri::command]
pub async fn watch_presence(shell: State<'_, Shell>, users: Vec<String>) -> CmdResult<Vec<String>> {
    Ok(shell.online_client().await?.watch_presence(users).await?)
}

#[tauri::command]
pub async fn typing(shell: State<'_, Shell>, conv: ConvId) -> CmdResult<()> {
    Ok(shell.require_client()?.typing(conv).await?)
}

#[tauri::command]
pub fn set_visible_conversation(shell: State<'_, Shell>, conv: Option<ConvId>) {
    shell.set_visible_conversation(conv);
}

/// A conversation's notification level, synced to the user's other devices by the server.
/// Taken as a string so an unknown one is `invalid`, not a failed argument conversion.
#[tauri::command]
pub async fn set_level(shell: State<'_, Shell>, conv: ConvId, level: String) -> CmdResult<()> {
    let level = NotifyLevel::from_name(&level).ok_or_else(|| {
        CommandError::invalid(format!(
            "unknown notification level {level:?}: use all, mentions or nothing"
        ))
    })?;
    Ok(shell.online_client().await?.set_level(conv, level).await?)
}

/// Do not disturb on (until `dnd.until`, or until turned off) or off (`null`), synced to the
/// user's other devices by the server.
#[tauri::command]
pub async fn set_dnd(shell: State<'_, Shell>, dnd: Option<Dnd>) -> CmdResult<()> {
    Ok(shell.online_client().await?.set_dnd(dnd).await?)
}

/// Do not disturb as last heard from the server (`null`: off; an ended one is off too).
#[tauri::command]
pub async fn dnd(shell: State<'_, Shell>) -> CmdResult<Option<Dnd>> {
    Ok(shell.require_client()?.dnd().await?)
}

#[tauri::command]
pub fn get_settings(shell: State<'_, Shell>) -> Settings {
    shell.settings()
}

#[tauri::command]
pub fn set_settings(shell: State<'_, Shell>, settings: Settings) -> CmdResult<Settings> {
    shell.set_settings(settings)
}

#[tauri::command]
pub async fn repair_store(shell: State<'_, Shell>) -> CmdResult<StoreRepair> {
    shell.repair_store().await
}

/// "Retry now" on the offline banner: skip the rest of the backoff wait and connect at once.
#[tauri::command]
pub fn reconnect_now(shell: State<'_, Shell>) -> CmdResult<()> {
    shell.require_client()?.reconnect_now();
    Ok(())
}

/// "Copy diagnostics" in Settings: version, platform, state and the newest log lines.
#[tauri::command]
pub fn diagnostics(shell: State<'_, Shell>) -> String {
    crate::diagnostics::report(&shell.app_state(), shell.data_dir())
}

// ---- your account (docs/ipc.md: set_profile ... export_history) ----

#[tauri::command]
pub async fn set_profile(
    shell: State<'_, Shell>,
    display_name: Option<String>,
    avatar: Option<String>,
) -> CmdResult<User> {
    Ok(shell
        .require_client()?
        .set_profile(display_name, avatar)
        .await?)
}

#[tauri::command]
pub async fn change_password(
    shell: State<'_, Shell>,
    current: String,
    new: String,
    sign_out_others: bool,
) -> CmdResult<()> {
    let client = shell.require_client()?;
    Ok(client
        .change_password(&current, &new, sign_out_others)
        .await?)
}

#[tauri::command]
pub async fn sessions(shell: State<'_, Shell>) -> CmdResult<Vec<SessionInfo>> {
    Ok(shell.require_client()?.sessions().await?)
}

#[tauri::command]
pub async fn revoke_session(shell: State<'_, Shell>, id: String) -> CmdResult<()> {
    Ok(shell.require_client()?.revoke_session(&id).await?)
}

#[tauri::command]
pub async fn delete_account(shell: State<'_, Shell>, password: String) -> CmdResult<AppState> {
    shell.delete_account(&password).await
}

/// "Export history": the whole history as `format`, to a new file in the user's Downloads
/// folder (the data directory when there is none), whose path comes back to be shown.
#[tauri::command]
pub async fn export_history(
    shell: State<'_, Shell>,
    format: ExportFormat,
) -> CmdResult<ExportSummary> {
    let client = shell.online_client().await?;
    let folder = downloads_dir(&shell);
    let name = natter::client::export::default_file_name(&client.user().username, format);
    Ok(client.export_to(format, &folder.join(name)).await?)
}

#[tauri::command]
pub fn accounts(shell: State<'_, Shell>) -> Vec<AccountInfo> {
    shell.accounts()
}

#[tauri::command]
pub async fn add_account(shell: State<'_, Shell>) -> CmdResult<AppState> {
    shell.add_account().await
}

#[tauri::command]
pub async fn switch_account(
    shell: State<'_, Shell>,
    server_url: String,
    username: String,
) -> CmdResult<AppState> {
    shell.switch_account(&server_url, &username).await
}

// ---- run by its host (docs/ipc.md "Hosting and inviting") ----

/// "Share on the network" on or off for the hosted server (remembered).
#[tauri::command]
pub async fn set_sharing(shell: State<'_, Shell>, on: bool) -> CmdResult<AppState> {
    shell.set_sharing(on).await
}

/// Reads pasted invite text (a `natter://invite` link, a message holding one, or a bare code).
#[tauri::command]
pub fn read_invite(text: String) -> CmdResult<InviteLink> {
    InviteLink::read(&text).map_err(|e| CommandError::invalid(e.to_string()))
}

/// A new invite valid for `expires_in` seconds (absent: 7 days), with the links to pass on.
#[tauri::command]
pub async fn create_invite(
    shell: State<'_, Shell>,
    expires_in: Option<u64>,
) -> CmdResult<NewInvite> {
    let invite = shell
        .online_client()
        .await?
        .create_invite(expires_in)
        .await?;
    let links = shell.invite_links(invite.code.as_deref().unwrap_or_default());
    Ok(NewInvite { invite, links })
}

#[tauri::command]
pub async fn invites(shell: State<'_, Shell>) -> CmdResult<Vec<Invite>> {
    Ok(shell.online_client().await?.invites().await?)
}

#[tauri::command]
pub async fn revoke_invite(shell: State<'_, Shell>, id: i64) -> CmdResult<()> {
    Ok(shell.online_client().await?.revoke_invite(id).await?)
}

#[tauri::command]
pub async fn pending_accounts(shell: State<'_, Shell>) -> CmdResult<Vec<PendingUser>> {
    Ok(shell.online_client().await?.pending_accounts().await?)
}

#[tauri::command]
pub async fn approve_account(shell: State<'_, Shell>, username: String) -> CmdResult<User> {
    Ok(shell.online_client().await?.approve(&username).await?)
}

#[tauri::command]
pub async fn reject_account(shell: State<'_, Shell>, username: String) -> CmdResult<()> {
    let client = shell.online_client().await?;
    Ok(client
        .account_action(AccountAction::Reject, &username)
        .await?)
}
