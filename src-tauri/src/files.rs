//! Attachments at the desktop's edge: the `natter-file:` URI scheme that lets the webview load
//! images from the shown account's file cache (and nothing else), the URLs the commands hand
//! out for it, and the staging of bytes the UI holds (a pasted image, a file from the picker)
//! as a file in the profile, so the outbox can upload it like any chosen file.
//!
//! The scheme is the only way the webview reaches a local file: the CSP allows it in `img-src`
//! alone, and every request is resolved inside the cache directory (`files/` in the profile,
//! `natter::client::files`) with its symbolic links followed; a path that leaves it (`..`, an
//! absolute path, an encoded separator, a link out) is refused. Files are served with a type
//! sniffed from their first bytes, images only as images, everything else as
//! `application/octet-stream`, and `X-Content-Type-Options: nosniff`: nothing is ever
//! rendered as HTML or SVG.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use tauri::http::{header, Request, Response, StatusCode};
use tauri::{Manager, Runtime, UriSchemeContext, UriSchemeResponder};

use crate::error::{CmdResult, CommandError};
use crate::state::Shell;

/// The scheme's name (`natter-file://localhost/<path in the cache>`), also in the CSP.
pub const SCHEME: &str = "natter-file";

/// Where staged bytes are kept in a profile, one directory per file (so it keeps its name).
pub const STAGING_DIR: &str = "staged";

/// A staged file no outbox entry names is removed once it is this old (its message was sent,
/// cancelled, or never queued); younger ones may be about to be queued.
const STAGED_KEEP: Duration = Duration::from_secs(60 * 60);

/// The biggest file staged: the server's default upload limit, checked before anything is
/// written (a server with a lower limit refuses the upload itself, naming the file).
pub const MAX_STAGED_BYTES: u64 = natter::protocol::limits::DEFAULT_MAX_UPLOAD_BYTES;

/// Why a request to the scheme was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a plain relative path of UTF-8 names (`..`, `.`, empty, an encoded separator).
    #[error("malformed path")]
    Malformed,
    /// The path leads out of the cache directory (a symbolic link out of it).
    #[error("outside the file cache")]
    Outside,
    /// Nothing (or no regular file) there, or no account signed in.
    #[error("no such file")]
    Missing,
}

impl Refused {
    fn status(self) -> StatusCode {
        match self {
            Refused::Malformed => StatusCode::BAD_REQUEST,
            Refused::Outside => StatusCode::FORBIDDEN,
            Refused::Missing => StatusCode::NOT_FOUND,
        }
    }
}

/// The cache directory of `profile_dir` (see `natter::client::files`).
pub fn cache_dir(profile_dir: &Path) -> PathBuf {
    profile_dir.join(natter::client::files::CACHE_DIR)
}

/// The file that the scheme's `uri_path` (percent-encoded, `/`-separated, relative to the
/// cache) names inside `cache`, once it is sure to be a regular file inside it.
pub fn resolve(cache: &Path, uri_path: &str) -> Result<PathBuf, Refused> {
    let mut path = cache.to_path_buf();
    let rel = uri_path.strip_prefix('/').unwrap_or(uri_path);
    for raw in rel.split('/') {
        let segment = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| Refused::Malformed)?;
        // One normal component each: no `..`, `.`, root, separator or NUL smuggled in encoded.
        let mut parts = Path::new(segment.as_ref()).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(name)), None)
                if !segment.contains(['\\', '/', '\0'])
                    && name.to_str() == Some(segment.as_ref()) =>
            {
                path.push(name)
            }
            _ => return Err(Refused::Malformed),
        }
    }
    let root = cache.canonicalize().map_err(|_| Refused::Missing)?;
    let real = path.canonicalize().map_err(|_| Refused::Missing)?;
    if !real.starts_with(&root) {
        return Err(Refused::Outside);
    }
    if !real.is_file() {
        return Err(Refused::Missing);
    }
    Ok(real)
}

/// The scheme URL of `file`, a path inside `cache` (as the client core's cache returns it).
pub fn url_for(cache: &Path, file: &Path) -> CmdResult<String> {
    let rel = file.strip_prefix(cache).map_err(|_| {
        CommandError::internal(format!("{} is not in the file cache", file.display()))
    })?;
    let mut url = format!("{SCHEME}://localhost");
    for part in rel.components() {
        let Component::Normal(name) = part else {
            return Err(CommandError::internal("unexpected path in the file cache"));
        };
        url.push('/');
        url.extend(utf8_percent_encode(
            &name.to_string_lossy(),
            NON_ALPHANUMERIC,
        ));
    }
    Ok(url)
}

/// The scheme URL of `file`, a path in `client`'s cache (as its `thumbnail` or `open_file` gave).
pub fn client_url(client: &natter::client::Client, file: &Path) -> CmdResult<String> {
    url_for(&cache_dir(&client.config().profile_dir), file)
}

/// The media type the scheme serves `head` (a file's first bytes) as: one of the raster image
/// types the server keeps, else bytes to download, never anything a webview would render as a
/// document.
pub fn sniff(head: &[u8]) -> &'static str {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if head.starts_with(b"\xff\xd8\xff") {
        "image/jpeg"
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        "image/gif"
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

/// The response to one request: the file's bytes, or an empty body with the refusal's status.
pub fn respond_from(cache: Option<PathBuf>, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let answer = |status: StatusCode, kind: &str, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, kind)
            .header("X-Content-Type-Options", "nosniff")
            .body(body)
            .expect("static headers are valid")
    };
    if request.method() != tauri::http::Method::GET {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain", Vec::new());
    }
    let found = cache
        .ok_or(Refused::Missing)
        .and_then(|cache| resolve(&cache, request.uri().path()));
    match found.and_then(|path| std::fs::read(path).map_err(|_| Refused::Missing)) {
        Ok(bytes) => answer(StatusCode::OK, sniff(&bytes), bytes),
        Err(refused) => {
            tracing::debug!(uri = %request.uri(), "{SCHEME}: {refused}");
            answer(refused.status(), "text/plain", Vec::new())
        }
    }
}

/// The response to `request` from the cache of the account `shell` shows (none when signed out).
pub fn respond(shell: Option<&Shell>, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let cache = shell
        .and_then(Shell::client)
        .map(|client| cache_dir(&client.config().profile_dir));
    respond_from(cache, request)
}

/// The scheme's handler (registered in `run_app_with`), reading off the main thread.
pub fn serve<R: Runtime>(
    ctx: UriSchemeContext<'_, R>,
    request: Request<Vec<u8>>,
    responder: UriSchemeResponder,
) {
    let shell = ctx
        .app_handle()
        .try_state::<Shell>()
        .map(|s| s.inner().clone());
    tauri::async_runtime::spawn_blocking(move || {
        responder.respond(respond(shell.as_ref(), &request));
    });
}

/// Decodes the percent-encoded file name the UI sends with staged bytes (`encodeURIComponent`).
pub fn decode_name(encoded: &str) -> CmdResult<String> {
    percent_decode_str(encoded)
        .decode_utf8()
        .map(|name| name.into_owned())
        .map_err(|_| CommandError::invalid("the file name is not UTF-8"))
}

/// Writes `bytes` as a new file named `name` (made safe by `natter::names::file_name`) under
/// `profile_dir`'s staging directory and returns its path, for `send_files`. Over
/// [`MAX_STAGED_BYTES`] or empty is `invalid`, checked before anything is written. Staged
/// files older than an hour that `keep` does not name are removed first.
pub fn stage(profile_dir: &Path, name: &str, bytes: &[u8], keep: &[PathBuf]) -> CmdResult<PathBuf> {
    if bytes.is_empty() {
        return Err(CommandError::invalid("the file is empty"));
    }
    if bytes.len() as u64 > MAX_STAGED_BYTES {
        return Err(CommandError::invalid(format!(
            "the file is {} bytes, over the limit of {MAX_STAGED_BYTES}",
            bytes.len()
        )));
    }
    let root = profile_dir.join(STAGING_DIR);
    sweep(&root, keep);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let dir = root.join(format!(
        "{now}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    create_private_dir(&dir)?;
    let path = dir.join(natter::names::file_name(name));
    write_private(&path, bytes)?;
    Ok(path)
}

/// Removes the staged directories older than [`STAGED_KEEP`] holding no file of `keep`.
fn sweep(root: &Path, keep: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STAGED_KEEP);
        if old && !keep.iter().any(|k| k.starts_with(&dir)) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), "cannot remove a staged file: {e}");
            }
        }
    }
}

fn create_private_dir(dir: &Path) -> CmdResult<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> CmdResult<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with_files() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("files");
        std::fs::create_dir_all(cache.join("thumbnails")).unwrap();
        std::fs::create_dir_all(cache.join("files/abc")).unwrap();
        std::fs::write(cache.join("thumbnails/0a1b"), b"\x89PNG\r\n\x1a\nrest").unwrap();
        std::fs::write(
            cache.join("files/abc/holiday photo é.jpg"),
            b"\xff\xd8\xffjpeg",
        )
        .unwrap();
        std::fs::write(dir.path().join("natter.db"), b"secret store").unwrap();
        (dir, cache)
    }

    #[test]
    fn files_in_the_cache_resolve_and_round_trip_through_their_urls() {
        let (_dir, cache) = cache_with_files();
        let file = cache.join("files/abc/holiday photo é.jpg");
        let url = url_for(&cache, &file).unwrap();
        assert_eq!(
            url,
            "natter-file://localhost/files/abc/holiday%20photo%20%C3%A9%2Ejpg"
        );
        let path = url.strip_prefix("natter-file://localhost").unwrap();
        assert_eq!(resolve(&cache, path).unwrap(), file.canonicalize().unwrap());
        assert!(url_for(&cache, Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn paths_out_of_the_cache_are_refused() {
        let (dir, cache) = cache_with_files();
        // Traversal, plain and encoded; absolute paths; empty and dot segments; a directory.
        for bad in [
            "/../natter.db",
            "/thumbnails/../../natter.db",
            "/%2e%2e/natter.db",
            "/thumbnails/..%2f..%2fnatter.db",
            "/thumbnails%2f0a1b",
            "/..%5cnatter.db",
            "//etc/passwd",
            "/%2fetc%2fpasswd",
            "/./thumbnails/0a1b",
            "/thumbnails//0a1b",
            "/thumbnails/0a1b%00",
            "/%ff",
        ] {
            assert_eq!(resolve(&cache, bad), Err(Refused::Malformed), "{bad}");
        }
        assert_eq!(resolve(&cache, "/thumbnails"), Err(Refused::Missing));
        assert_eq!(resolve(&cache, "/thumbnails/nope"), Err(Refused::Missing));
        // A symbolic link inside the cache that points out of it.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("natter.db"), cache.join("thumbnails/ln"))
                .unwrap();
            assert_eq!(resolve(&cache, "/thumbnails/ln"), Err(Refused::Outside));
            std::os::unix::fs::symlink(dir.path(), cache.join("up")).unwrap();
            assert_eq!(resolve(&cache, "/up/natter.db"), Err(Refused::Outside));
        }
        // No cache yet (nothing downloaded, or signed out): nothing.
        let none = dir.path().join("missing");
        assert_eq!(resolve(&none, "/thumbnails/0a1b"), Err(Refused::Missing));
    }

    fn get(uri: &str) -> Request<Vec<u8>> {
        Request::builder().uri(uri).body(Vec::new()).unwrap()
    }

    #[test]
    fn responses_carry_a_sniffed_image_type_and_nosniff_or_a_refusal() {
        let (dir, cache) = cache_with_files();
        std::fs::write(cache.join("thumbnails/page"), b"<html><script>x</script>").unwrap();
        let ok = respond_from(
            Some(cache.clone()),
            &get("natter-file://localhost/thumbnails/0a1b"),
        );
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CONTENT_TYPE], "image/png");
        assert_eq!(ok.headers()["x-content-type-options"], "nosniff");
        assert_eq!(ok.body(), b"\x89PNG\r\n\x1a\nrest");
        let html = respond_from(
            Some(cache.clone()),
            &get("natter-file://localhost/thumbnails/page"),
        );
        assert_eq!(
            html.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        let traversal = respond_from(
            Some(cache.clone()),
            &get("natter-file://localhost/%2e%2e/natter.db"),
        );
        assert_eq!(traversal.status(), StatusCode::BAD_REQUEST);
        assert!(traversal.body().is_empty());
        let signed_out = respond_from(None, &get("natter-file://localhost/thumbnails/0a1b"));
        assert_eq!(signed_out.status(), StatusCode::NOT_FOUND);
        let post = Request::builder()
            .method("POST")
            .uri("natter-file://localhost/thumbnails/0a1b")
            .body(Vec::new())
            .unwrap();
        assert_eq!(
            respond_from(Some(cache), &post).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        drop(dir);
    }

    #[test]
    fn sniffing_knows_the_server_image_types_only() {
        assert_eq!(sniff(b"GIF89a..."), "image/gif");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(sniff(b"<svg xmlns="), "application/octet-stream");
        assert_eq!(sniff(b""), "application/octet-stream");
    }

    #[test]
    fn staging_checks_size_first_keeps_a_safe_name_and_sweeps_old_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let e = stage(dir.path(), "a.png", b"", &[]).unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::Invalid);
        let big = vec![0u8; MAX_STAGED_BYTES as usize + 1];
        let e = stage(dir.path(), "big.bin", &big, &[]).unwrap_err();
        assert!(e.message.contains("over the limit"), "{}", e.message);
        assert!(!dir.path().join(STAGING_DIR).exists(), "nothing written");

        let path = stage(dir.path(), "../../evil/\u{202e}gnp.exe", b"bytes", &[]).unwrap();
        assert!(path.starts_with(dir.path().join(STAGING_DIR)));
        assert_eq!(path.file_name().unwrap(), "gnp.exe");
        assert_eq!(std::fs::read(&path).unwrap(), b"bytes");
        let second = stage(dir.path(), "../../evil/\u{202e}gnp.exe", b"other", &[]).unwrap();
        assert_ne!(path, second, "the same name twice is two files");

        // Old leftovers go unless an outbox entry still names them.
        let old = SystemTime::now() - STAGED_KEEP - Duration::from_secs(60);
        for p in [&path, &second] {
            std::fs::File::open(p.parent().unwrap())
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let third = stage(dir.path(), "c.txt", b"c", std::slice::from_ref(&second)).unwrap();
        assert!(!path.exists(), "an old staged file nobody sends is removed");
        assert!(second.exists(), "a staged file in the outbox stays");
        assert!(third.exists());
    }

    #[test]
    fn names_are_percent_decoded_or_refused() {
        assert_eq!(decode_name("%E5%9B%BE%20a.png").unwrap(), "图 a.png");
        assert!(decode_name("%ff").is_err());
    }
}
