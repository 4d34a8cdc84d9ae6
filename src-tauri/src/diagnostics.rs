//! What a user can hand over when something goes wrong: the app's own log file (a daily-rotated
//! file in the profile's `logs/`, a week kept) and the "Copy diagnostics" report, which is the
//! app's version, platform and state plus the newest log lines. No secrets go in: the state has
//! no token, and the client never logs one.

use std::path::{Path, PathBuf};

use crate::state::AppState;

/// The log directory inside the data directory.
pub const LOG_DIR: &str = "logs";
/// Log files are `natter.YYYY-MM-DD.log`.
pub const LOG_PREFIX: &str = "natter";
pub const LOG_SUFFIX: &str = "log";
/// Days of logs kept.
pub const LOG_FILES_KEPT: usize = 7;
/// Log lines a report carries.
pub const REPORT_LOG_LINES: usize = 200;

pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_DIR)
}

/// Why the app has no log file.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("cannot make the log directory private: {0}")]
    Dir(#[from] std::io::Error),
    #[error(transparent)]
    Appender(#[from] tracing_appender::rolling::InitError),
}

/// The daily-rotated log file appender for `data_dir`, or why it cannot be had. The directory
/// is made first, private (0700): the log names servers, accounts and errors, and the appender
/// creates its files with the umask's mode. Made before the builder, whose pruning of old files
/// otherwise complains on stderr at the first start that the directory does not exist.
pub fn log_appender(
    data_dir: &Path,
) -> Result<tracing_appender::rolling::RollingFileAppender, LogFileError> {
    let dir = log_dir(data_dir);
    natter::dbfile::private_dir(&dir)?;
    Ok(tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(LOG_PREFIX)
        .filename_suffix(LOG_SUFFIX)
        .max_log_files(LOG_FILES_KEPT)
        .build(dir)?)
}

/// The last `max` lines of the newest log file (file names sort by date), or "" when there is
/// none yet.
pub fn log_tail(data_dir: &Path, max: usize) -> String {
    let newest = std::fs::read_dir(log_dir(data_dir))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(LOG_PREFIX) && n.ends_with(LOG_SUFFIX))
        })
        .max();
    let Some(text) = newest.and_then(|p| std::fs::read(p).ok()) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max)..].join("\n")
}

/// The "Copy diagnostics" text.
pub fn report(state: &AppState, data_dir: &Path) -> String {
    let connection = serde_json::to_string(&state.connection).unwrap_or_default();
    let settings = serde_json::to_string(&state.settings).unwrap_or_default();
    let hosting = state
        .hosting
        .as_ref()
        .map_or_else(|| "no".to_string(), |h| format!("port {}", h.port));
    let mut out = format!(
        "Natter {version} ({os}/{arch})\n\
         phase: {phase:?}\n\
         server: {server}\n\
         user: {user}\n\
         connection: {connection}\n\
         hosting: {hosting}\n\
         settings: {settings}\n\
         data directory: {dir}\n",
        version = env!("CARGO_PKG_VERSION"),
        os = std::env::consts::OS,
        arch = std::env::consts::ARCH,
        phase = state.phase,
        server = state.server_url.as_deref().unwrap_or("none"),
        user = state.user.as_ref().map_or("none", |u| u.username.as_str()),
        dir = data_dir.display(),
    );
    let tail = log_tail(data_dir, REPORT_LOG_LINES);
    out.push_str(&format!(
        "\nlast {REPORT_LOG_LINES} log lines ({}):\n",
        log_dir(data_dir).display()
    ));
    out.push_str(if tail.is_empty() {
        "(no log yet)"
    } else {
        &tail
    });
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_comes_from_the_newest_log_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(log_tail(dir.path(), 5), "");
        let logs = log_dir(dir.path());
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("natter.2026-12-01.log"), "old\n").unwrap();
        let lines: String = (1..=300).map(|i| format!("line {i}\n")).collect();
        std::fs::write(logs.join("natter.2026-12-03.log"), lines).unwrap();
        std::fs::write(logs.join("other.txt"), "not a log\n").unwrap();
        let tail = log_tail(dir.path(), 3);
        assert_eq!(tail, "line 298\nline 299\nline 300");
    }

    /// The log directory is private whether the appender makes it or finds it looser (an
    /// install from before this rule made it 0755).
    #[cfg(unix)]
    #[test]
    fn the_log_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let fresh = tempfile::tempdir().unwrap();
        log_appender(fresh.path()).unwrap();
        assert_eq!(mode(&log_dir(fresh.path())), 0o700);

        let old = tempfile::tempdir().unwrap();
        std::fs::create_dir(log_dir(old.path())).unwrap();
        std::fs::set_permissions(log_dir(old.path()), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        log_appender(old.path()).unwrap();
        assert_eq!(mode(&log_dir(old.path())), 0o700);
    }

    /// Old days' files beyond the last LOG_FILES_KEPT are deleted when the app starts (and at
    /// each daily rotation); files that are not the app's logs are left alone.
    #[test]
    fn old_log_files_are_deleted_beyond_the_kept_number() {
        let dir = tempfile::tempdir().unwrap();
        let logs = log_dir(dir.path());
        std::fs::create_dir(&logs).unwrap();
        let old: Vec<String> = (1..=LOG_FILES_KEPT + 2)
            .map(|day| format!("{LOG_PREFIX}.2026-11-{day:02}.{LOG_SUFFIX}"))
            .collect();
        for name in &old {
            std::fs::write(logs.join(name), "old\n").unwrap();
            // Pruning goes by creation time: keep the days' order apart.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::write(logs.join("notes.txt"), "mine").unwrap();
        let _appender = log_appender(dir.path()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let ours = left.iter().filter(|n| n.starts_with(LOG_PREFIX)).count();
        assert_eq!(ours, LOG_FILES_KEPT, "{left:?}");
        // The oldest three went, the newest old ones stayed, with today's and notes.txt.
        for gone in &old[..3] {
            assert!(!left.contains(gone), "{gone} kept: {left:?}");
        }
        for kept in &old[3..] {
            assert!(left.contains(kept), "{kept} deleted: {left:?}");
        }
        assert!(left.contains(&"notes.txt".to_string()), "{left:?}");
    }

    #[test]
    fn the_appender_writes_into_the_profile() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut appender = log_appender(dir.path()).unwrap();
        writeln!(appender, "hello from the app").unwrap();
        appender.flush().unwrap();
        assert_eq!(log_tail(dir.path(), 10), "hello from the app");
    }
}
