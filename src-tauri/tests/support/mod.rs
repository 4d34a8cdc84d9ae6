//! What the desktop's integration tests share: the app under Tauri's mock runtime with its main
//! window, and calling a command through the IPC as the UI's `invoke` does.

use natter_desktop::{run_app_with, Options};
use serde_json::Value;
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_context, noop_assets, MockRuntime};
use tauri::webview::InvokeRequest;
use tauri::{App, Builder, WebviewWindow, WebviewWindowBuilder};

/// Builds the app as `run` wires it on `builder` (plus whatever plugins the test added), starts
/// the shell on `options`' profile and opens the main window.
pub fn open_app(
    builder: Builder<MockRuntime>,
    options: Options,
) -> (App<MockRuntime>, WebviewWindow<MockRuntime>) {
    let app = run_app_with(builder, options.clone())
        .build(mock_context(noop_assets()))
        .expect("app builds");
    // The mock runtime has no event loop to run the setup hook; run the same init.
    natter_desktop::init(app.handle(), options).expect("shell starts");
    let window = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();
    (app, window)
}

/// Calls `cmd` with `args` (JS argument names) from `window`: the command's result, or what it
/// rejected with.
pub fn invoke(window: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    invoke_body(window, cmd, InvokeBody::Json(args), Default::default())
}

/// Calls `cmd` with any body and headers (raw bytes, as `invoke(cmd, uint8Array, { headers })`).
pub fn invoke_body(
    window: &WebviewWindow<MockRuntime>,
    cmd: &str,
    body: InvokeBody,
    headers: tauri::http::HeaderMap,
) -> Result<Value, Value> {
    let request = InvokeRequest {
        cmd: cmd.into(),
        callback: CallbackFn(0),
        error: CallbackFn(1),
        url: "tauri://localhost".parse().unwrap(),
        body,
        headers,
        invoke_key: tauri::test::INVOKE_KEY.to_string(),
    };
    get_ipc_response(window, request).map(|b| b.deserialize::<Value>().unwrap())
}
