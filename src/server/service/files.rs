//! Files and profile pictures: taking an upload (size limit, quota, pace, streaming into the blob store while
//! hashing, sniffing, an image's thumbnail, the record) and finding a file for a download under
//! the one rule of who may read it (`store::rules::FILE_FOR_SQL`). The bytes are the blob
//! store's ([`crate::server::blobs`]); what an image is, [`crate::server::images`]'s. A profile
//! picture is received the same way, then cropped square and kept as a blob the user's profile
//! names (`avatar_image`) until another replaces it ([`sweep_now`]). The quota is held by a [`Reservation`] in the store from the head
//! on (atomic across nodes); uploads no message carries are swept after the grace period
//! ([`sweep`]), their blobs with them unless something else names them.

use std::io::{Read, Seek};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::names;
use crate::protocol::{Attachment, ErrorCode, User};

use super::super::blobs::{BlobId, Staged};
use super::super::images::{self, ImageError};
use super::super::store::{rules, FileRow, Storage, StoreError, UserId, WriteOp, WriteOutcome};
use super::super::Shared;
use super::{write_for_call, ServiceError};

/// An upload's hold on its uploader's quota (and, once hashed, on its blobs), from [`admit`]
/// until it is recorded. Dropped unrecorded (the upload failed, or its request was dropped),
/// it ends in the store (`WriteOp::EndReservation`), so its bytes stop counting.
pub struct Reservation {
    id: String,
    store: Arc<dyn Storage>,
    open: bool,
}

impl Reservation {
    /// The write that recorded the upload ended the reservation too.
    fn ended(mut self) {
        self.open = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            let op = WriteOp::EndReservation {
                reservation: self.id.clone(),
            };
            let id = self.id.clone();
            let done = Box::new(move |result: Result<WriteOutcome, StoreError>| {
                if let Err(e) = result {
                    // The sweep removes it after the grace period.
                    tracing::warn!(reservation = %id, error = %e, "cannot end an upload's reservation");
                }
            });
            if let Err(e) = self.store.write(op, done) {
                tracing::warn!(reservation = %self.id, error = %e, "cannot end an upload's reservation");
            }
        }
    }
}

/// Check an upload before its body is read: `declared` bytes (the `Content-Length`) against
/// the size limit and the user's pace, then reserve them against the user's quota in the store
/// (atomic: two uploads racing for the last bytes of a quota cannot both pass, on any node).
/// An edge calls it before it reads any of the body. The pace is this node's (see
/// [`Shared::uploads`]); the quota is the cluster's.
pub async fn admit(
    shared: &Shared,
    user: UserId,
    declared: u64,
) -> Result<Reservation, ServiceError> {
    if declared == 0 {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            "the file is empty: an upload has at least one byte",
        ));
    }
    let max = shared.config.max_upload_bytes;
    if declared > max {
        return Err(ServiceError::refused(
            ErrorCode::TooLong,
            format!("files are at most {max} bytes; this one is {declared}"),
        ));
    }
    let id = Uuid::new_v4().simple().to_string();
    let op = WriteOp::ReserveUpload {
        id: id.clone(),
        user,
        size: declared,
        quota: shared.config.upload_quota_bytes,
        now: shared.clock.now_ms(),
    };
    shared.store.write_then(op, |_| {}).await?;
    let reservation = Reservation {
        id,
        store: shared.store.clone(),
        open: true,
    };
    // After the quota, so that an upload over the quota does not use up the pace; refused
    // here, the reservation ends as it drops.
    shared
        .uploads
        .take(user, shared.clock.instant())
        .map_err(|wait| ServiceError::Later {
            code: ErrorCode::RateLimited,
            message: "too many uploads",
            wait,
        })?;
    Ok(reservation)
}

/// Times an upload asks again to hold blobs a sweep is deleting, [`HOLD_RETRY`] apart.
const HOLD_ATTEMPTS: u32 = 50;
const HOLD_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Name the blobs `reservation`'s upload is about to store, so that no sweep deletes them
/// before the upload is recorded. A blob a sweep is deleting at this moment is waited for
/// (the upload then stores it again).
async fn hold_blobs(
    shared: &Shared,
    reservation: &Reservation,
    blob: BlobId,
    thumbnail: Option<BlobId>,
) -> Result<(), ServiceError> {
    let mut attempt = 0;
    loop {
        let op = WriteOp::HoldBlobs {
            reservation: reservation.id.clone(),
            blob: blob.to_string(),
            thumbnail: thumbnail.map(|t| t.to_string()),
        };
        match shared.store.write_then(op, |_| {}).await {
            Err(StoreError::Rejected(ErrorCode::Busy, _)) if attempt < HOLD_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(HOLD_RETRY).await;
            }
            other => return other.map(drop).map_err(ServiceError::from),
        }
    }
}

/// Remove what uploads left behind, once (the periodic task runs it; see the module docs):
/// the uploads older than the grace period that no message carries, the reservations of
/// uploads that died with their node, and the blobs nothing names any more. Returns the
/// number of uploads removed.
pub async fn sweep(shared: &Shared) -> Result<u64, ServiceError> {
    let grace = shared.config.unattached_grace.as_millis() as i64;
    let before = shared.clock.now_ms().saturating_sub(grace);
    let mut total = 0;
    loop {
        let op = WriteOp::SweepUploads { before };
        let WriteOutcome::Uploads { removed, doomed } = shared.store.write_then(op, |_| {}).await?
        else {
            return Err(internal("a sweep answered with another outcome", "?"));
        };
        total += removed;
        if !doomed.is_empty() {
            let blobs = shared.blobs.clone();
            let gone = doomed.clone();
            blocking(move || -> std::io::Result<()> {
                for blob in gone.iter().filter_map(|b| BlobId::parse(b)) {
                    blobs.remove(blob)?;
                }
                Ok(())
            })
            .await?
            .map_err(|e| internal("cannot remove a blob", e))?;
            let forget = WriteOp::ForgetBlobs {
                blobs: doomed.clone(),
            };
            shared.store.write_then(forget, |_| {}).await?;
        }
        let batch = rules::SWEEP_BATCH as usize;
        if (removed as usize) < batch && doomed.len() < batch {
            return Ok(total);
        }
    }
}

/// Delete at once the blob a write just doomed: the previous profile picture, which a new one,
/// its removal or the account's deletion left unnamed (the store dooms it in that write only
/// when no user has it as picture and no upload or reservation has the same bytes). A sweep
/// ([`sweep`]) runs now rather than at the next periodic one, so the old picture's bytes do not
/// stay on disk and an upload of the same bytes need not wait for them to go. A failure is
/// only logged: the change was made, and the periodic sweep finishes the job.
pub(crate) async fn sweep_now(shared: &Shared) {
    if let Err(e) = sweep(shared).await {
        tracing::warn!(error = %e, "cannot remove a previous profile picture yet; the periodic sweep will");
    }
}

/// Sweep ([`sweep`]) every `upload_sweep_every` until the server stops. Every node runs it:
/// the store orders their sweeps and uploads, so no node deletes a blob another still needs.
pub(crate) async fn sweep_periodically(shared: std::sync::Weak<Shared>) {
    let every = match shared.upgrade() {
        Some(s) => s.config.upload_sweep_every,
        None => return,
    };
    let mut stopping = match shared.upgrade() {
        Some(s) => s.stopping.subscribe(),
        None => return,
    };
    while let Some(shared) = super::periodically(&shared, every, &mut stopping).await {
        match sweep(&shared).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed unattached uploads"),
            Err(e) => tracing::warn!(error = %e, "the sweep of unattached uploads failed"),
        }
    }
}

/// A body received whole into a staging file.
struct Received {
    staged: Staged,
    blob: BlobId,
    media_type: &'static str,
    size: u64,
}

/// Stream `body` (exactly `declared` bytes) into a staging file of the blob store while
/// hashing it, and sniff its type. A body that ends early, runs long or stalls for the body
/// timeout between chunks is refused; the staging file then disappears with it.
async fn receive<S, E>(
    shared: &Shared,
    declared: u64,
    mut body: S,
) -> Result<Received, ServiceError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let blobs = shared.blobs.clone();
    let staged = blocking(move || blobs.stage())
        .await?
        .map_err(|e| internal("cannot stage an upload", e))?;
    let mut file = tokio::fs::File::from_std(
        staged
            .file()
            .try_clone()
            .map_err(|e| internal("cannot stage an upload", e))?,
    );
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(images::SNIFF_BYTES);
    let mut received: u64 = 0;
    let idle = shared.config.body_timeout;
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Err(_) => {
                return Err(bad(format!(
                    "the upload stalled: no bytes for {} s after {received} of {declared}",
                    idle.as_secs_f64()
                )))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(bad(format!(
                    "the upload was cut short after {received} of {declared} bytes: {e}"
                )))
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        received += chunk.len() as u64;
        if received > declared {
            return Err(bad(format!(
                "the body is longer than its Content-Length of {declared} bytes"
            )));
        }
        if head.len() < images::SNIFF_BYTES {
            let take = (images::SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| internal("cannot write an upload", e))?;
    }
    if received != declared {
        return Err(bad(format!(
            "the upload was cut short after {received} of {declared} bytes"
        )));
    }
    file.flush()
        .await
        .map_err(|e| internal("cannot write an upload", e))?;
    Ok(Received {
        staged,
        blob: BlobId::from_hasher(hasher),
        media_type: images::sniff(&head),
        size: received,
    })
}

/// Run `work` on the staged bytes on a blocking thread, holding one of the image permits
/// (decoding takes memory). Its refusal (a decompression bomb, a broken image) is 400.
async fn with_image<T: Send + 'static>(
    shared: &Shared,
    staged: &Staged,
    work: impl FnOnce(&mut std::fs::File) -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ServiceError> {
    let _permit = shared
        .image_permits
        .acquire()
        .await
        .map_err(|e| internal("image decoding is closed", e))?;
    let mut reader = staged
        .file()
        .try_clone()
        .map_err(|e| internal("cannot read an upload", e))?;
    let done = blocking(move || -> std::io::Result<Result<T, ImageError>> {
        reader.rewind()?;
        Ok(work(&mut reader))
    })
    .await?;
    match done {
        Ok(result) => result.map_err(|e| bad(e.to_string())),
        Err(e) => Err(internal("cannot read an upload", e)),
    }
}

/// Take an upload [`admit`] let in: [`receive`] it, make an image's thumbnail, then commit the
/// bytes and record the upload under a new id. Anything refused leaves nothing stored.
pub async fn upload<S, E>(
    shared: &Arc<Shared>,
    user: UserId,
    name: &str,
    reservation: Reservation,
    declared: u64,
    body: S,
) -> Result<Attachment, ServiceError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let Received {
        staged,
        blob,
        media_type,
        size,
    } = receive(shared, declared, body).await?;
    let image = if images::is_image(media_type) {
        Some(with_image(shared, &staged, |f| images::inspect_image(f)).await?)
    } else {
        None
    };

    let thumbnail_bytes = image.as_ref().map(|i| i.thumbnail.clone());
    let thumbnail_id = thumbnail_bytes.as_deref().map(BlobId::of);
    hold_blobs(shared, &reservation, blob, thumbnail_id).await?;
    let blobs = shared.blobs.clone();
    let thumbnail = blocking(move || -> std::io::Result<Option<BlobId>> {
        let thumbnail = thumbnail_bytes.map(|t| blobs.put(&t)).transpose()?;
        blobs.commit(staged, blob)?;
        Ok(thumbnail)
    })
    .await?
    .map_err(|e| internal("cannot store an upload", e))?;

    let attachment = Attachment {
        id: Uuid::new_v4().simple().to_string(),
        name: names::file_name(name),
        media_type: media_type.to_string(),
        size,
        width: image.as_ref().map(|i| i.width),
        height: image.as_ref().map(|i| i.height),
        thumbnail: thumbnail.map(|t| t.to_string()),
    };
    let file = FileRow {
        attachment: attachment.clone(),
        uploader: user,
        blob: blob.to_string(),
        thumbnail_type: image.map(|i| i.thumbnail_type.to_string()),
    };
    let op = WriteOp::AddFile {
        file,
        reservation: reservation.id.clone(),
        now: shared.clock.now_ms(),
    };
    shared.store.write_then(op, |_| {}).await?;
    reservation.ended();
    Ok(attachment)
}

/// Make the image `body` (checked like an upload by [`admit`]) the user's profile picture:
/// cropped square, scaled, re-encoded, stored as a blob (the upload itself is not kept), and
/// announced to everyone sharing a conversation with them (`user_updated`). Returns the profile.
pub async fn set_avatar<S, E>(
    shared: &Arc<Shared>,
    user: UserId,
    reservation: Reservation,
    declared: u64,
    body: S,
) -> Result<User, ServiceError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let received = receive(shared, declared, body).await?;
    if !images::is_image(received.media_type) {
        return Err(bad(
            "a profile picture is a PNG, JPEG, GIF or WebP image".to_string()
        ));
    }
    let (bytes, _) = with_image(shared, &received.staged, |f| images::avatar(f)).await?;
    let image = BlobId::of(&bytes);
    hold_blobs(shared, &reservation, image, None).await?;
    let blobs = shared.blobs.clone();
    blocking(move || blobs.put(&bytes))
        .await?
        .map_err(|e| internal("cannot store a profile picture", e))?;
    let op = WriteOp::SetAvatarImage {
        user,
        image: Some(image.to_string()),
        reservation: Some(reservation.id.clone()),
    };
    let profile = set_avatar_image(shared, op).await?;
    reservation.ended();
    Ok(profile)
}

/// Remove the user's profile picture (they are shown with their `avatar` again).
pub async fn clear_avatar(shared: &Shared, user: UserId) -> Result<User, ServiceError> {
    let op = WriteOp::SetAvatarImage {
        user,
        image: None,
        reservation: None,
    };
    set_avatar_image(shared, op).await
}

async fn set_avatar_image(shared: &Shared, op: WriteOp) -> Result<User, ServiceError> {
    match write_for_call(shared, op).await? {
        WriteOutcome::UserUpdated(row) => {
            sweep_now(shared).await;
            Ok(row.user)
        }
        other => {
            tracing::error!(
                ?other,
                "a profile picture change answered with another outcome"
            );
            Err(ServiceError::refused(
                ErrorCode::Internal,
                "internal server error",
            ))
        }
    }
}

/// Profile picture `id` (a blob that is someone's current picture), open with its length.
/// Any signed-in user may see any picture, as they may see any display name.
pub async fn avatar(shared: &Shared, id: String) -> Result<Download<()>, ServiceError> {
    let not_found = || ServiceError::refused(ErrorCode::NotFound, "no such profile picture");
    let blob = BlobId::parse(&id).ok_or_else(not_found)?;
    if !shared.store.is_avatar(id).await? {
        return Err(not_found());
    }
    let (mut content, len) = open_blob(shared, blob).await?.ok_or_else(not_found)?;
    // The picture's type is in its first bytes (JPEG, or PNG when transparent).
    let (content, media_type) = blocking(move || -> std::io::Result<_> {
        let mut head = [0u8; images::SNIFF_BYTES];
        let n = content.read(&mut head)?;
        content.rewind()?;
        Ok((content, images::sniff(&head[..n]).to_string()))
    })
    .await?
    .map_err(|e| internal("cannot read a profile picture", e))?;
    Ok(Download {
        file: (),
        content,
        media_type,
        len,
    })
}

/// Blob `blob` opened, with its length; None (logged) when the store lost it.
async fn open_blob(
    shared: &Shared,
    blob: BlobId,
) -> Result<Option<(std::fs::File, u64)>, ServiceError> {
    let blobs = shared.blobs.clone();
    let opened = blocking(move || -> std::io::Result<Option<(std::fs::File, u64)>> {
        let Some(f) = blobs.open(blob)? else {
            return Ok(None);
        };
        let len = f.metadata()?.len();
        Ok(Some((f, len)))
    })
    .await?
    .map_err(|e| internal("cannot open a stored file", e))?;
    if opened.is_none() {
        tracing::error!(%blob, "a recorded blob is missing from the blob store");
    }
    Ok(opened)
}

/// Which bytes of a file a download wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    Thumbnail,
}

/// A file to send: its record, the open blob, its media type as served, and its length.
pub struct Download<F = FileRow> {
    pub file: F,
    pub content: std::fs::File,
    pub media_type: String,
    pub len: u64,
}

/// File `id` (or its thumbnail) for `user`, if they may read it (see the module docs). Every
/// other case, including an image without a thumbnail and a missing blob, is `not_found`, so
/// nobody learns that a file they may not read exists.
pub async fn download(
    shared: &Shared,
    user: UserId,
    id: String,
    part: Part,
) -> Result<Download, ServiceError> {
    let not_found = || ServiceError::refused(ErrorCode::NotFound, "no such file");
    let file = shared
        .store
        .file_for(id, user)
        .await?
        .ok_or_else(not_found)?;
    let (blob, media_type) = match part {
        Part::Whole => (Some(file.blob.clone()), file.attachment.media_type.clone()),
        Part::Thumbnail => (
            file.attachment.thumbnail.clone(),
            file.thumbnail_type.clone().unwrap_or_default(),
        ),
    };
    let blob = blob
        .as_deref()
        .and_then(BlobId::parse)
        .ok_or_else(not_found)?;
    let (content, len) = open_blob(shared, blob).await?.ok_or_else(not_found)?;
    Ok(Download {
        file,
        content,
        media_type,
        len,
    })
}

fn bad(message: String) -> ServiceError {
    ServiceError::refused(ErrorCode::BadRequest, message)
}

/// A failure of the server's own, logged with its cause; the client hears `internal`.
fn internal(what: &str, e: impl std::fmt::Display) -> ServiceError {
    tracing::error!(error = %e, "{what}");
    ServiceError::refused(ErrorCode::Internal, "internal server error")
}

/// Run file system or decoding work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal("a blocking task failed", e))
}
