//! A headless Chromium (Debian's `chromium`) driven over the Chrome DevTools Protocol:
//! a small client on tokio-tungstenite, enough to load a page, run JavaScript in it,
//! take screenshots and collect console errors.
//!
//! [`Browser::launch`] starts `chromium --headless=new --remote-debugging-port=0` with a
//! profile of its own in a temporary directory, reads the port it chose from the
//! `DevToolsActivePort` file, opens a page target and connects to it. The process is
//! killed when the `Browser` is dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    page: Socket,
    next_id: u64,
    /// Protocol events received while waiting for answers, in order.
    events: Vec<Value>,
}

impl Browser {
    /// Starts Chromium and connects to a blank page of `width`×`height`.
    pub async fn launch(width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut command = Command::new("chromium");
        command.args([
            "--headless=new",
            "--remote-debugging-port=0",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--window-size={width},{height}"),
        ]);
        command.arg(format!("--user-data-dir={}", profile.path().display()));
        // Chromium refuses to run as root with its sandbox on.
        if running_as_root() {
            command.arg("--no-sandbox");
        }
        let child = command
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts (scripts/test installs Debian's chromium package)");
        let port = devtools_port(profile.path(), Duration::from_secs(30));
        let browser_url = format!("ws://127.0.0.1:{port}{}", devtools_path(profile.path()));
        let (mut browser, _) = tokio_tungstenite::connect_async(&browser_url).await.expect("the browser's endpoint");
        let created = call_on(&mut browser, 1, "Target.createTarget", json!({ "url": "about:blank" }), &mut Vec::new())
            .await
            .expect("a new page");
        let target = created["targetId"].as_str().expect("a target id").to_string();
        let (page, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/devtools/page/{target}"))
            .await
            .expect("the page's endpoint");
        let mut browser = Browser { child, _profile: profile, page, next_id: 1, events: Vec::new() };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await;
        browser
    }

    /// Calls a protocol method on the page; panics on a protocol error.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        call_on(&mut self.page, self.next_id, method, params, &mut self.events)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Loads `url` and waits for its load event.
    pub async fn navigate(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({ "url": url })).await;
        let deadline = Instant::now() + CALL_TIMEOUT;
        while !self.events.iter().any(|e| e["method"] == "Page.loadEventFired") {
            assert!(Instant::now() < deadline, "{url} did not load");
            self.pump(Duration::from_millis(100)).await;
        }
    }

    /// The value of a JavaScript expression (awaited if it is a promise); panics on an
    /// exception.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let answer = self
            .call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }))
            .await;
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy, and returns its value.
    pub async fn wait_for(&mut self, expression: &str, timeout: Duration, what: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false)) && value != json!(0) && value != json!("");
            if truthy {
                return value;
            }
            assert!(Instant::now() < deadline, "{what}: not within {timeout:?} ({expression} is {value})");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Saves a PNG of the page as it is shown.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true })).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("the screenshot directory");
        std::fs::write(path, png).expect("writing the screenshot");
    }

    /// Takes what the page reported in the next `wait`.
    pub async fn pump(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), self.page.next()).await
        {
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).expect("protocol JSON");
                if value.get("method").is_some() {
                    self.events.push(value);
                }
            }
        }
    }

    /// Console errors, uncaught exceptions and error log entries (failed loads) so far.
    pub fn console_errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|event| {
                let params = &event["params"];
                match event["method"].as_str()? {
                    "Runtime.consoleAPICalled" if params["type"] == "error" => {
                        Some(format!("console: {}", params["args"]))
                    }
                    "Runtime.exceptionThrown" => Some(format!("exception: {}", params["exceptionDetails"])),
                    "Log.entryAdded" if params["entry"]["level"] == "error" => {
                        Some(format!("log: {} {}", params["entry"]["text"], params["entry"]["url"]))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call on a protocol socket: events that arrive before the answer go to `events`.
async fn call_on(
    socket: &mut Socket,
    id: u64,
    method: &str,
    params: Value,
    events: &mut Vec<Value>,
) -> Result<Value, String> {
    let request = json!({ "id": id, "method": method, "params": params }).to_string();
    socket.send(Message::Text(request.into())).await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(left, socket.next()).await {
            Err(_) => return Err(format!("no answer within {CALL_TIMEOUT:?}")),
            Ok(None) => return Err("the browser closed the connection".into()),
            Ok(Some(message)) => message.map_err(|e| e.to_string())?,
        };
        let Message::Text(text) = message else { continue };
        let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if value["id"] == json!(id) {
            return match value.get("error") {
                Some(error) => Err(error.to_string()),
                None => Ok(value["result"].clone()),
            };
        }
        if value.get("method").is_some() {
            events.push(value);
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The port Chromium wrote to `DevToolsActivePort` once it listens.
fn devtools_port(profile: &Path, timeout: Duration) -> u16 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(profile.join("DevToolsActivePort"))
            && let Some(port) = text.lines().next().and_then(|line| line.trim().parse().ok())
        {
            return port;
        }
        assert!(Instant::now() < deadline, "chromium wrote no DevToolsActivePort within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The browser endpoint's path, the second line of `DevToolsActivePort`.
fn devtools_path(profile: &Path) -> String {
    let text = std::fs::read_to_string(profile.join("DevToolsActivePort")).expect("DevToolsActivePort");
    text.lines().nth(1).expect("the browser endpoint's path").trim().to_string()
}
