//! Start at login through the IPC, with the real autostart plugin writing the real XDG
//! autostart entry. The plugin writes under `$HOME`, so this test binary points `HOME` at a temp
//! directory before any app exists (one test in this binary: nothing else reads `HOME` while it
//! runs). Only the window system is mocked (Tauri's mock runtime).

mod support;

use std::path::{Path, PathBuf};

use natter_desktop::config::DesktopConfig;
use natter_desktop::Options;
use serde_json::{json, Value};
use tauri::test::{mock_builder, MockRuntime};
use tauri::{App, WebviewWindow};

struct Desk {
    app: App<MockRuntime>,
    window: WebviewWindow<MockRuntime>,
}

impl Desk {
    /// The app on the profile in `dir`, with the autostart plugin registered as `run` does.
    fn open(dir: &Path) -> Self {
        let options = Options {
            data_dir: Some(dir.to_path_buf()),
            presenter: None,
            host_bind: None,
        };
        let builder = mock_builder().plugin(natter_desktop::startup::autostart_plugin());
        let (app, window) = support::open_app(builder, options);
        Desk { app, window }
    }

    fn call(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        support::invoke(&self.window, cmd, args)
    }

    /// Sends the current settings with `changes` applied, as the Settings dialog does.
    fn set(&self, changes: Value) -> Result<Value, Value> {
        let mut settings = self.call("get_settings", json!({})).unwrap();
        for (k, v) in changes.as_object().unwrap() {
            settings[k] = v.clone();
        }
        self.call("set_settings", json!({ "settings": settings }))
    }

    /// Where the plugin keeps this app's entry on Linux.
    fn entry(&self, home: &Path) -> PathBuf {
        home.join(".config/autostart")
            .join(format!("{}.desktop", self.app.package_info().name))
    }
}

#[test]
fn start_at_login_writes_renews_and_removes_the_autostart_entry() {
    let home = tempfile::tempdir().unwrap();
    // SAFETY of the test: this binary's only test, set before any thread reads HOME.
    std::env::set_var("HOME", home.path());
    // A desktop session has ~/.config; the plugin (auto-launch 0.5) makes only `autostart` in it.
    std::fs::create_dir(home.path().join(".config")).unwrap();
    let profile = tempfile::tempdir().unwrap();

    let desk = Desk::open(profile.path());
    let entry = desk.entry(home.path());
    let settings = desk.call("get_settings", json!({})).unwrap();
    assert_eq!(settings["start_at_login"], json!(false), "off by default");
    assert_eq!(settings["start_minimised"], json!(false), "off by default");
    assert!(!entry.exists(), "no entry until asked");

    // On: the entry starts this very binary, and the setting is saved.
    let saved = desk.set(json!({"start_at_login": true})).unwrap();
    assert_eq!(saved["start_at_login"], json!(true));
    let text = std::fs::read_to_string(&entry).expect("entry written");
    let exe = std::env::current_exe().unwrap();
    assert!(
        text.contains(&*exe.to_string_lossy()),
        "entry runs the app: {text}"
    );
    assert!(DesktopConfig::load(profile.path()).settings.start_at_login);

    // Bad input: a setting that is not a boolean is refused, nothing changes.
    let mut bad = desk.call("get_settings", json!({})).unwrap();
    bad["start_at_login"] = json!("no");
    assert!(desk
        .call("set_settings", json!({ "settings": bad }))
        .is_err());
    assert!(entry.exists());
    assert!(DesktopConfig::load(profile.path()).settings.start_at_login);

    // The desktop lost the entry: the next start writes it again.
    std::fs::remove_file(&entry).unwrap();
    drop(desk);
    let desk = Desk::open(profile.path());
    // The entry is renewed once the profile is restored, which the first command waits for.
    desk.call("get_settings", json!({})).unwrap();
    assert!(entry.exists(), "renewed at start");

    // Off: the entry goes away.
    let saved = desk.set(json!({"start_at_login": false})).unwrap();
    assert_eq!(saved["start_at_login"], json!(false));
    assert!(!entry.exists(), "entry removed");
    assert!(!DesktopConfig::load(profile.path()).settings.start_at_login);

    // Off at start leaves whatever is there alone (only turning it off removes the entry).
    std::fs::write(&entry, "[Desktop Entry]\n").unwrap();
    drop(desk);
    let desk = Desk::open(profile.path());
    desk.call("get_settings", json!({})).unwrap();
    assert!(entry.exists());
    std::fs::remove_file(&entry).unwrap();

    // The desktop refuses (the autostart directory cannot be made): the command fails with a
    // sentence saying so, and the setting stays off.
    std::fs::remove_dir(home.path().join(".config/autostart")).unwrap();
    std::fs::write(home.path().join(".config/autostart"), "not a directory").unwrap();
    let err = desk.set(json!({"start_at_login": true})).unwrap_err();
    assert_eq!(err["code"], json!("internal"), "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("start-at-login"),
        "{err}"
    );
    assert!(!DesktopConfig::load(profile.path()).settings.start_at_login);
    let settings = desk.call("get_settings", json!({})).unwrap();
    assert_eq!(settings["start_at_login"], json!(false));
}
