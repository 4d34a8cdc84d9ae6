//! The blob store: the bytes of uploaded files and their thumbnails, named by their SHA-256
//! ([`BlobId`]), so the same bytes uploaded twice are kept once. What a file is called, who
//! uploaded it and who may read it are the store's business (`store`, table `files`); this
//! module only keeps bytes.
//!
//! [`BlobStore`] is the interface; [`DirBlobs`] is the default, a directory (`blobs/` in the
//! data directory, or `--blobs DIR`) laid out as `ab/cdef...` by the id's hex. Bytes are
//! written to a staging file in the same file system (`DIR/staging/`) and renamed into place
//! only once whole and synced: an interrupted upload leaves nothing under a blob's name, and at
//! start a node removes staging files nobody has written to for [`ABANDONED_AFTER`] (not all of
//! them: on a directory shared by a cluster, the others' uploads in progress are there). Nodes of a cluster share one directory that they all
//! mount (NFS, a shared volume): a blob one node stored is there for the others to serve, and
//! because a name only ever holds its own bytes, two nodes storing the same blob at once is
//! harmless.
//!
//! The calls block (file system work): run them on a blocking thread.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A blob's name: the SHA-256 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> BlobId {
        BlobId(Sha256::digest(bytes).into())
    }

    /// The id a finished hasher names.
    pub fn from_hasher(hasher: Sha256) -> BlobId {
        BlobId(hasher.finalize().into())
    }

    /// Parse the 64 lowercase hex digits [`fmt::Display`] writes.
    pub fn parse(hex: &str) -> Option<BlobId> {
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut id = [0u8; 32];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(BlobId(id))
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

/// Bytes on their way into the store: a staging file that disappears unless committed.
pub struct Staged(tempfile::NamedTempFile);

impl Staged {
    /// The staging file, to write to.
    pub fn file(&self) -> &File {
        self.0.as_file()
    }
}

/// Where blobs are kept. See the module docs.
pub trait BlobStore: Send + Sync {
    /// A new, empty staging file on the store's own file system.
    fn stage(&self) -> io::Result<Staged>;

    /// Sync `staged` and make it blob `id`, unless that blob exists already (then the staged
    /// copy is dropped). The caller vouches that `id` is the SHA-256 of the staged bytes.
    fn commit(&self, staged: Staged, id: BlobId) -> io::Result<()>;

    /// Blob `id` opened for reading; None when there is no such blob.
    fn open(&self, id: BlobId) -> io::Result<Option<File>>;

    /// Whether blob `id` is stored.
    fn exists(&self, id: BlobId) -> bool;

    /// Delete blob `id` (nothing when it is not stored). The caller vouches that nothing names
    /// it any more (the sweep of unattached uploads, `service::files::sweep`).
    fn remove(&self, id: BlobId) -> io::Result<()>;

    /// Store `bytes` (a thumbnail: small and already in memory) and return their id.
    fn put(&self, bytes: &[u8]) -> io::Result<BlobId> {
        let id = BlobId::of(bytes);
        if !self.exists(id) {
            let staged = self.stage()?;
            staged.file().write_all(bytes)?;
            self.commit(staged, id)?;
        }
        Ok(id)
    }
}

/// Blobs as files in a directory: `DIR/ab/cdef...`. See the module docs.
pub struct DirBlobs {
    root: PathBuf,
}

/// The staging directory's name inside the root (never a two-hex-digit name, so never a
/// blob's directory).
const STAGING: &str = "staging";

/// How long a staging file stays untouched before a starting node takes it for one a crash
/// left. An upload in progress writes at least every `--body-timeout` (10 s by default), or is
/// refused.
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

impl DirBlobs {
    /// The store at `root`, created (private, 0700) if missing, its staging directory rid of
    /// what interrupted uploads left (files untouched for [`ABANDONED_AFTER`]).
    pub fn open(root: &Path) -> io::Result<DirBlobs> {
        let staging = root.join(STAGING);
        std::fs::create_dir_all(&staging)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        }
        for entry in std::fs::read_dir(&staging)? {
            let entry = entry?;
            let idle = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| at.elapsed().ok());
            // A file whose age cannot be read is left for the next start.
            if idle.is_none_or(|idle| idle < ABANDONED_AFTER) {
                continue;
            }
            let path = entry.path();
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a staged upload");
            }
        }
        Ok(DirBlobs {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, id: BlobId) -> PathBuf {
        let hex = id.to_string();
        self.root.join(&hex[..2]).join(&hex[2..])
    }
}

impl BlobStore for DirBlobs {
    fn stage(&self) -> io::Result<Staged> {
        tempfile::NamedTempFile::new_in(self.root.join(STAGING)).map(Staged)
    }

    fn commit(&self, staged: Staged, id: BlobId) -> io::Result<()> {
        let path = self.path(id);
        if path.exists() {
            return Ok(());
        }
        staged.file().sync_all()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        staged.0.persist(&path).map_err(|e| e.error)?;
        // The rename is durable once the directory that now names the blob is synced.
        #[cfg(unix)]
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn open(&self, id: BlobId) -> io::Result<Option<File>> {
        match File::open(self.path(id)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, id: BlobId) -> bool {
        self.path(id).is_file()
    }

    fn remove(&self, id: BlobId) -> io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn same_bytes_are_kept_once_and_staging_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DirBlobs::open(dir.path()).unwrap();
        let a = blobs.put(b"hello").unwrap();
        let b = blobs.put(b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.to_string(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let mut read = String::new();
        blobs
            .open(a)
            .unwrap()
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "hello");
        // A staged file never committed (an interrupted upload) is gone. Of the files a crash
        // left, a node that (re)opens the store removes the abandoned ones only: a fresh one
        // may be another node's upload in progress on a shared directory.
        let abandoned = blobs.stage().unwrap();
        abandoned.file().write_all(b"half").unwrap();
        drop(abandoned);
        let staged_path = |s: &Staged| s.0.path().to_path_buf();
        let crashed = blobs.stage().unwrap();
        let crashed_path = staged_path(&crashed);
        crashed
            .file()
            .set_modified(std::time::SystemTime::now() - ABANDONED_AFTER)
            .unwrap();
        std::mem::forget(crashed);
        let in_progress = blobs.stage().unwrap();
        in_progress.file().write_all(b"still coming").unwrap();
        let reopened = DirBlobs::open(dir.path()).unwrap();
        assert!(
            !crashed_path.exists(),
            "an abandoned staging file is removed"
        );
        assert!(
            staged_path(&in_progress).exists(),
            "an upload in progress keeps its staging file"
        );
        drop(in_progress);
        assert_eq!(
            std::fs::read_dir(dir.path().join(STAGING)).unwrap().count(),
            0
        );
        assert!(reopened.exists(a));
        assert!(!reopened.exists(BlobId::of(b"half")));
        // Removed, a blob is gone; removing it again (another node's sweep) is no error.
        reopened.remove(a).unwrap();
        assert!(!reopened.exists(a));
        assert!(reopened.open(a).unwrap().is_none());
        reopened.remove(a).unwrap();
        assert_eq!(BlobId::parse(&a.to_string()), Some(a));
        for bad in ["", "zz", &"A".repeat(64), &"0".repeat(63)] {
            assert_eq!(BlobId::parse(bad), None, "{bad:?}");
        }
    }
}
