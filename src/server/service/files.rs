//! Files: taking an upload (size limit, quota, pace, streaming into the blob store while
//! hashing, sniffing, an image's thumbnail, the record) and finding a file for a download under
//! the one rule of who may read it (`store::rules::FILE_FOR_SQL`). The bytes are the blob
//! store's ([`crate::server::blobs`]); what an image is, [`crate::server::images`]'s.

use std::io::Seek;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::names;
use crate::protocol::{Attachment, ErrorCode};

use super::super::blobs::BlobId;
use super::super::images::{self, ImageError, Inspected};
use super::super::store::{FileRow, UserId, WriteOp};
use super::super::Shared;
use super::ServiceError;

/// Check an upload before its body is read: `declared` bytes (the `Content-Length`) against
/// the size limit, the user's quota and pace. An edge calls it before it reads any of the body.
pub async fn admit(shared: &Shared, user: UserId, declared: u64) -> Result<(), ServiceError> {
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
    let quota = shared.config.upload_quota_bytes;
    if quota > 0 {
        let used = shared.store.uploaded_bytes(user).await?;
        if used.saturating_add(declared) > quota {
            return Err(ServiceError::refused(
                ErrorCode::TooLong,
                format!(
                    "your uploads may total {quota} bytes; {used} are used and this file needs \
                     {declared} more"
                ),
            ));
        }
    }
    shared
        .uploads
        .take(user, shared.clock.instant())
        .map_err(|wait| ServiceError::Later {
            code: ErrorCode::RateLimited,
            message: "too many uploads",
            wait,
        })?;
    Ok(())
}

/// Take an upload [`admit`] let in: stream `body` (exactly `declared` bytes) into a staging
/// file while hashing it, sniff its type, make an image's thumbnail, then commit the bytes
/// and record the upload under a new id. A body that ends early, runs long or stalls for the
/// body timeout between chunks is refused and leaves nothing stored.
pub async fn upload<S, E>(
    shared: &Arc<Shared>,
    user: UserId,
    name: &str,
    declared: u64,
    mut body: S,
) -> Result<Attachment, ServiceError>
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
    drop(file);
    let blob = BlobId::from_hasher(hasher);
    let media_type = images::sniff(&head);

    let image = if images::is_image(media_type) {
        let _permit = shared
            .image_permits
            .acquire()
            .await
            .map_err(|e| internal("image decoding is closed", e))?;
        let mut reader = staged
            .file()
            .try_clone()
            .map_err(|e| internal("cannot read an upload", e))?;
        let inspected = blocking(move || -> std::io::Result<Result<Inspected, ImageError>> {
            reader.rewind()?;
            Ok(images::inspect_image(&mut reader))
        })
        .await?;
        match inspected {
            Ok(Ok(inspected)) => Some(inspected),
            // A decompression bomb or a broken image: refused, nothing stored.
            Ok(Err(e)) => return Err(bad(e.to_string())),
            Err(e) => return Err(internal("cannot read an upload", e)),
        }
    } else {
        None
    };

    let blobs = shared.blobs.clone();
    let thumbnail_bytes = image.as_ref().map(|i| i.thumbnail.clone());
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
        size: received,
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
        now: shared.clock.now_ms(),
    };
    shared.store.write_then(op, |_| {}).await?;
    Ok(attachment)
}

/// Which bytes of a file a download wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    Thumbnail,
}

/// A file to send: its record, the open blob, its media type as served, and its length.
pub struct Download {
    pub file: FileRow,
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
    let Some((content, len)) = opened else {
        tracing::error!(%blob, "a recorded file's bytes are missing from the blob store");
        return Err(not_found());
    };
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
