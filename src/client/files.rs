//! Attachments on this computer: the profile's bounded cache of thumbnails and opened files
//! (so history with images reads offline), and saving a file into a directory the user chose.
//!
//! The cache is `files/` in the profile directory (0700, every file 0600): a thumbnail under
//! `thumbnails/<its SHA-256>` (equal thumbnails are one file), a file under `files/<id>/<its
//! safe name>` (so an opened file has its own name), a profile picture under `avatars/<its
//! id>` (a new picture has a new id). Its size is capped; the least recently
//! used files go first. "Used" is a file's modification time, set each time it is handed out,
//! so the order survives restarts without a table of its own.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use url::Url;

use crate::client::{http, ClientError, Result};
use crate::names;
use crate::protocol::Attachment;

/// The cache's default cap, in bytes.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// The cache directory inside a profile directory.
pub const CACHE_DIR: &str = "files";

/// Which of an attachment's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The image's thumbnail (`GET /api/files/{id}/thumbnail`).
    Thumbnail,
    /// The file itself (`GET /api/files/{id}`).
    File,
}

/// A profile's file cache (see the module doc).
#[derive(Debug)]
pub struct FileCache {
    dir: PathBuf,
    cap: u64,
    /// One download or eviction at a time: two callers asking for the same file get one copy.
    busy: tokio::sync::Mutex<()>,
}

/// Ids the server makes are hex digits; anything else must not shape a path.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

impl FileCache {
    /// The cache in `profile_dir`, holding at most `cap` bytes.
    pub fn new(profile_dir: &Path, cap: u64) -> FileCache {
        FileCache {
            dir: profile_dir.join(CACHE_DIR),
            cap,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Where `part` of `a` is kept, and the server path it comes from.
    fn place(&self, a: &Attachment, part: Part) -> Result<(PathBuf, String)> {
        if !is_plain_id(&a.id) {
            return Err(ClientError::Invalid(format!("not a file id: {:?}", a.id)));
        }
        match part {
            Part::Thumbnail => {
                let Some(hash) = a.thumbnail.as_deref().filter(|h| is_plain_id(h)) else {
                    return Err(ClientError::NotFound(format!(
                        "{} has no thumbnail",
                        a.name
                    )));
                };
                Ok((
                    self.dir.join("thumbnails").join(hash),
                    format!("/api/files/{}/thumbnail", a.id),
                ))
            }
            Part::File => Ok((
                self.dir
                    .join("files")
                    .join(&a.id)
                    .join(names::file_name(&a.name)),
                format!("/api/files/{}", a.id),
            )),
        }
    }

    /// The local path of `part` of `a`, downloaded from `server` first when not cached, and
    /// marked as just used. Then the cache is brought back under its cap.
    pub async fn get(
        &self,
        server: &Url,
        token: &str,
        a: &Attachment,
        part: Part,
    ) -> Result<PathBuf> {
        let (path, remote) = self.place(a, part)?;
        self.fetch(server, token, path, &remote).await
    }

    /// The local path of the profile picture `avatar_image` (a user's
    /// [`crate::protocol::User::avatar_image`]), downloaded from `GET /api/avatars/{id}` first
    /// when not cached, like [`FileCache::get`].
    pub async fn avatar(&self, server: &Url, token: &str, avatar_image: &str) -> Result<PathBuf> {
        if !is_plain_id(avatar_image) {
            return Err(ClientError::Invalid(format!(
                "not a picture id: {avatar_image:?}"
            )));
        }
        let path = self.dir.join("avatars").join(avatar_image);
        let remote = format!("/api/avatars/{avatar_image}");
        self.fetch(server, token, path, &remote).await
    }

    /// `path`, downloaded from `remote` first when missing, marked used; then the cache is
    /// brought back under its cap.
    async fn fetch(
        &self,
        server: &Url,
        token: &str,
        path: PathBuf,
        remote: &str,
    ) -> Result<PathBuf> {
        let _busy = self.busy.lock().await;
        if !path.is_file() {
            let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
            private_dirs(&self.dir, &parent).map_err(local)?;
            http::download_to(server, token, remote, &path).await?;
        }
        touch(&path).map_err(local)?;
        let (dir, cap, keep) = (self.dir.clone(), self.cap, path.clone());
        tokio::task::spawn_blocking(move || evict(&dir, cap, &keep))
            .await
            .map_err(|e| ClientError::Internal(format!("cache: {e}")))?
            .map_err(local)?;
        Ok(path)
    }

    /// Bytes the cache holds now.
    pub fn size(&self) -> u64 {
        cached(&self.dir).iter().map(|c| c.size).sum()
    }
}

fn local(e: std::io::Error) -> ClientError {
    ClientError::Internal(format!("file cache: {e}"))
}

/// Creates `dir` and every directory from it down to `leaf`, private (0700).
fn private_dirs(root: &Path, leaf: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(root)?;
    builder.create(leaf)
}

/// Marks `path` as just used.
fn touch(path: &Path) -> std::io::Result<()> {
    std::fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(SystemTime::now())
}

struct Cached {
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

/// Every file under `dir`.
fn cached(dir: &Path) -> Vec<Cached> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                out.push(Cached {
                    path: entry.path(),
                    size: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    out
}

/// Removes the least recently used files under `dir` until it holds at most `cap` bytes,
/// never `keep` (the file just asked for, even if it alone is over the cap).
fn evict(dir: &Path, cap: u64, keep: &Path) -> std::io::Result<()> {
    let mut files = cached(dir);
    let mut total: u64 = files.iter().map(|c| c.size).sum();
    if total <= cap {
        return Ok(());
    }
    files.sort_by_key(|c| c.used);
    for c in files {
        if total <= cap {
            break;
        }
        if c.path == keep {
            continue;
        }
        match std::fs::remove_file(&c.path) {
            Ok(()) => total -= c.size,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => total -= c.size,
            Err(e) => return Err(e),
        }
        // A file's own directory (`files/<id>/`) goes with it; it fails harmlessly when not
        // empty or when it is a shared one.
        if let Some(parent) = c.path.parent().filter(|p| p.parent() != Some(dir)) {
            let _ = std::fs::remove_dir(parent);
        }
    }
    Ok(())
}

/// Downloads attachment `a` from `server` into `dir` (which must exist) under its safe name
/// ([`names::file_name`]: never a path outside `dir`, never a hidden or `..` name), adding
/// ` (2)`, ` (3)`, ... before the extension instead of overwriting a file already there.
/// Returns the new file's path.
pub async fn save_into(server: &Url, token: &str, a: &Attachment, dir: &Path) -> Result<PathBuf> {
    if !is_plain_id(&a.id) {
        return Err(ClientError::Invalid(format!("not a file id: {:?}", a.id)));
    }
    if !dir.is_dir() {
        return Err(ClientError::Invalid(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let name = names::file_name(&a.name);
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
        _ => (name.clone(), String::new()),
    };
    for n in 1..=1000u32 {
        let candidate = if n == 1 {
            dir.join(&name)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        // The name is one plain component, so this holds; checked all the same.
        if candidate.parent() != Some(dir) {
            return Err(ClientError::Invalid(format!("unsafe file name {name:?}")));
        }
        if candidate.symlink_metadata().is_ok() {
            continue;
        }
        let remote = format!("/api/files/{}", a.id);
        return match http::download_to(server, token, &remote, &candidate).await {
            Ok(_) => Ok(candidate),
            // Taken between the look and the rename: try the next name.
            Err(ClientError::Conflict(_)) => continue,
            Err(e) => Err(e),
        };
    }
    Err(ClientError::Conflict(format!(
        "too many files named like {name} in {}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_drops_the_least_recently_used_first_and_never_the_one_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(CACHE_DIR);
        private_dirs(&root, &root.join("thumbnails")).unwrap();
        let at = |secs: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let put = |name: &str, used: u64| {
            let p = root.join("thumbnails").join(name);
            std::fs::write(&p, [0u8; 100]).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(at(used))
                .unwrap();
            p
        };
        let old = put("old", 1);
        let mid = put("mid", 2);
        let new = put("new", 3);
        evict(&root, 300, &new).unwrap();
        assert!(
            old.exists() && mid.exists() && new.exists(),
            "under the cap: kept"
        );
        evict(&root, 200, &old).unwrap();
        assert!(old.exists(), "the one asked for stays even though oldest");
        assert!(!mid.exists(), "the least recently used other goes");
        assert!(new.exists());
        evict(&root, 50, &new).unwrap();
        assert!(
            !old.exists() && new.exists(),
            "alone over the cap, it still stays"
        );
    }

    #[test]
    fn ids_that_could_shape_a_path_are_refused() {
        for bad in ["", "..", "a/b", "a\\b", "../../etc", "x y"] {
            assert!(!is_plain_id(bad), "{bad:?}");
        }
        assert!(is_plain_id("8c4f3b1e2d6a4f0e9b7c5a3d1e2f4a6b"));
    }
}
