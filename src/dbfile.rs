//! What a SQLite database file on disk needs, shared by the server's and the client's stores: a
//! private directory and private files (the server's database holds password hashes and tokens,
//! a client profile its session token and all history), an integrity check at open, and telling
//! a damaged file or a full disk apart from other SQLite errors.

use std::io;
use std::path::{Path, PathBuf};

/// Mode of a data or profile directory: only its owner may list or enter it.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;
/// Mode of a database file and its `-wal` and `-shm` companions.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;

/// Files next to a database that hold its data too (SQLite creates them with the database's
/// mode, but an older install may have left them looser).
pub const COMPANIONS: [&str; 2] = ["-wal", "-shm"];

/// Creates `dir` (and its parents) if needed and makes it private (0700). A directory that was
/// looser is tightened and the change logged. The mode is set explicitly, so the umask does not
/// matter.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let existed = dir.is_dir();
    std::fs::create_dir_all(dir)?;
    restrict(dir, existed, DirOrFile::Dir)
}

/// Makes `path` a private file (0600): created empty when missing, tightened (and logged) when
/// looser. Creating it before SQLite does matters: SQLite gives the `-wal` and `-shm` files the
/// database file's mode.
pub fn private_file(path: &Path) -> io::Result<()> {
    let existed = path.exists();
    if !existed {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
        options.open(path)?;
    }
    restrict(path, existed, DirOrFile::File)
}

/// Prepares the place of the database at `db` before SQLite opens it: a private parent directory,
/// and the database (created empty when missing) with its `-wal` and `-shm` files private.
pub fn prepare(db: &Path) -> io::Result<()> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    private_file(db)?;
    for companion in COMPANIONS.map(|suffix| with_suffix(db, suffix)) {
        if companion.exists() {
            restrict(&companion, true, DirOrFile::File)?;
        }
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name (`natter.db` + `-wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[derive(Clone, Copy)]
enum DirOrFile {
    Dir,
    File,
}

#[cfg(unix)]
fn restrict(path: &Path, existed: bool, kind: DirOrFile) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let want = match kind {
        DirOrFile::Dir => DIR_MODE,
        DirOrFile::File => FILE_MODE,
    };
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != want {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
        if existed && mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                was = format!("{mode:o}"),
                now = format!("{want:o}"),
                "tightened permissions: others could read this"
            );
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _existed: bool, _kind: DirOrFile) -> io::Result<()> {
    // Windows profile directories are private to the user by their ACL already.
    Ok(())
}

/// What an integrity check found wrong, for a message a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage(pub String);

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lines of `quick_check` output kept in the message: the first few say where the damage is.
const DAMAGE_LINES: usize = 3;

/// `PRAGMA quick_check` on `conn`: `Ok(Ok(()))` when the file is sound, `Ok(Err(damage))` when
/// it is damaged (including a file SQLite cannot read as a database), `Err` for other failures.
/// It reads every page once (about a second per few hundred MiB).
pub fn quick_check(conn: &rusqlite::Connection) -> rusqlite::Result<Result<(), Damage>> {
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare("PRAGMA quick_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.take(DAMAGE_LINES).collect()
    };
    match run() {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(Ok(())),
        Ok(lines) => Ok(Err(Damage(lines.join("; ")))),
        Err(e) if is_corrupt(&e) => Ok(Err(Damage(e.to_string()))),
        Err(e) => Err(e),
    }
}

/// Whether SQLite found the file damaged or not a database at all.
pub fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Whether a write failed because the disk (or the database's size limit) is full.
pub fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn loose_places_are_tightened_and_new_ones_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("x.db");
        let wal = dir.join("x.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare(&db).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert!(!dir.join("x.db-shm").exists());
    }
}
