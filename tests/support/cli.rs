//! Running the real `natter` CLI binary on a profile, as a user would, for integration tests.

use std::path::Path;

use tokio::process::Command;

use super::PASSWORD;

pub struct Run {
    pub ok: bool,
    pub out: String,
    pub err: String,
}

pub async fn natter(profile: &Path, args: &[&str]) -> Run {
    natter_env(profile, args, &[("NATTER_PASSWORD", PASSWORD)]).await
}

pub async fn natter_env(profile: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
    cmd.arg("--profile").arg(profile).args(args);
    cmd.env_remove("NATTER_PASSWORD")
        .env_remove("NATTER_SERVER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // No terminal: a password prompt must fail rather than hang.
    cmd.stdin(std::process::Stdio::null());
    let o = cmd.output().await.expect("run natter");
    Run {
        ok: o.status.success(),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

pub fn ok(r: Run) -> String {
    assert!(
        r.ok,
        "expected success; stdout: {}\nstderr: {}",
        r.out, r.err
    );
    r.out
}

pub fn fails(r: Run) -> String {
    assert!(!r.ok, "expected failure; stdout: {}", r.out);
    assert!(!r.err.trim().is_empty(), "an error message on stderr");
    r.err
}
