//! The console in a real browser: headless Chromium driven over WebDriver (Debian's chromium and
//! chromium-driver; the test fails without them) against the sandbox binary. Sign in with the
//! sandbox's key; apply the example room and watch it appear and turn Ready without a reload; stop
//! and start it with its buttons, and see the budget's refusal in words; run a command and see its
//! first line before its last is written; upload 5 MiB with a moving progress bar and find the
//! same bytes on the instance; see the audit chain verified and the sandbox's latest signed
//! checkpoint; sign out and find the pages closed. Screenshots of each page are kept in the target
//! directory (`tmp/console-screenshots/`).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::sandbox::Sandbox;

const ROOM: &str = "default/investor-x";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free loopback port, and a headless Chromium session through it.
async fn browser() -> (Driver, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is not installed: `make test` installs Debian's chromium and chromium-driver");
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options = json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1366,900", "--no-proxy-server"] });
    let capabilities = serde_json::Map::from_iter([("goog:chromeOptions".to_string(), options)]);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    (driver, client)
}

/// Evaluates `script` (a function body) in the page.
async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// Polls `script` until it returns `want`, within `seconds`; the time it took.
async fn until(client: &Client, script: &str, want: Value, seconds: u64, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let got = js(client, script).await;
        if got == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(seconds), "{what}: last {got}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), client.screenshot().await.unwrap()).unwrap();
}

fn phase_script() -> String {
    format!("return document.querySelector('tr[data-key=\"{ROOM}\"] td.phase')?.dataset.phase ?? null;")
}

async fn click(client: &Client, css: &str) {
    client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium() {
    let sandbox = Sandbox::start();
    let key = std::fs::read_to_string(sandbox.dir.path().join("admin-key")).unwrap().trim().to_string();
    let (_driver, client) = browser().await;
    let ui = |path: &str| format!("{}{path}", sandbox.admin);

    // Signing in.
    client.goto(&ui("/ui/")).await.unwrap();
    assert!(client.current_url().await.unwrap().path().ends_with("/ui/sign-in"));
    screenshot(&client, "sign-in").await;
    client.find(Locator::Id("key")).await.unwrap().send_keys(&key).await.unwrap();
    click(&client, "form[action='/ui/sign-in'] button").await;
    until(&client, "return location.pathname;", json!("/ui/fleet"), 10, "signed in").await;
    let cookie = js(&client, "return document.cookie;").await;
    assert_eq!(cookie, json!(""), "the session cookie is HttpOnly: the page's script cannot read it");

    // The example room appears and turns Ready without a reload.
    let marker = "window.__same_page = true; return true;";
    js(&client, marker).await;
    let applied = sandbox.shell("kubectl apply -f examples/dataroom.yaml");
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    until(&client, &phase_script(), json!("Ready"), 60, "the room turns Ready on the page").await;
    assert_eq!(js(&client, "return window.__same_page === true;").await, json!(true), "no reload");
    screenshot(&client, "fleet").await;

    // A change made with kubectl reaches the page through the operator's watch.
    let started = Instant::now();
    sandbox.ok(&["patch", "dr", "investor-x", "--type", "merge", "-p", r#"{"spec":{"state":"Stopped"}}"#]);
    let button =
        format!("return document.querySelector('button[data-room=\"{ROOM}\"]')?.dataset.action ?? null;");
    until(&client, &button, json!("start"), 20, "the stop shows").await;
    let to_browser = started.elapsed();
    until(&client, &phase_script(), json!("Stopped"), 30, "stopped").await;
    // Start and stop with the buttons.
    click(&client, &format!("button[data-room='{ROOM}']")).await;
    until(&client, &phase_script(), json!("Ready"), 60, "started by its button").await;
    click(&client, &format!("button[data-room='{ROOM}'][data-action='stop']")).await;
    until(&client, &phase_script(), json!("Stopped"), 30, "stopped by its button").await;
    // With no instance left in the budget, Start is refused and the page says why, in words.
    let budget = |max: u64| set_budget(&sandbox.admin, &key, max);
    let allowed = budget(0);
    click(&client, &format!("button[data-room='{ROOM}'][data-action='start']")).await;
    let refusal =
        "const t = document.getElementById('notice').textContent; return t.includes('maxInstances');";
    until(&client, refusal, json!(true), 10, "the budget's refusal").await;
    assert_eq!(js(&client, &phase_script()).await, json!("Stopped"), "refused: nothing started");
    screenshot(&client, "fleet-refused").await;
    budget(allowed);
    click(&client, &format!("button[data-room='{ROOM}'][data-action='start']")).await;
    until(&client, &phase_script(), json!("Ready"), 60, "started again").await;

    // The exec console streams: `hi` shows while `there` is yet to be written.
    let instance = js(
        &client,
        &format!("return document.querySelector('tr[data-key=\"{ROOM}\"] a').getAttribute('href');"),
    )
    .await;
    client.goto(&ui(instance.as_str().unwrap())).await.unwrap();
    client
        .find(Locator::Id("command"))
        .await
        .unwrap()
        .send_keys("echo hi; sleep 1; echo there")
        .await
        .unwrap();
    let output = "return document.getElementById('exec-output').textContent;";
    let submitted = Instant::now();
    click(&client, "#exec button").await;
    let first = "return document.getElementById('exec-output').textContent.includes('hi');";
    until(&client, first, json!(true), 10, "the first line").await;
    let first_byte = submitted.elapsed();
    let at_first = js(&client, output).await;
    assert!(!at_first.as_str().unwrap().contains("there"), "the first line came alone: {at_first}");
    until(
        &client,
        "return document.getElementById('exec-result').textContent.startsWith('exit 0');",
        json!(true),
        10,
        "the exit",
    )
    .await;
    assert_eq!(js(&client, output).await, json!("hi\nthere\n"));
    screenshot(&client, "instance").await;

    // A 5 MiB upload with its progress, and the same bytes on the instance.
    let file = sandbox.dir.path().join("upload.bin");
    let bytes: Vec<u8> = (0..5 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    client.find(Locator::Id("upload-file")).await.unwrap().send_keys(file.to_str().unwrap()).await.unwrap();
    let path = client.find(Locator::Id("upload-path")).await.unwrap();
    path.clear().await.unwrap();
    path.send_keys("/tmp/console-upload.bin").await.unwrap();
    click(&client, "#upload button").await;
    until(
        &client,
        "return document.getElementById('upload-result').textContent.startsWith('Uploaded');",
        json!(true),
        30,
        "the upload",
    )
    .await;
    let moves =
        js(&client, "return Number(document.getElementById('upload-progress').dataset.moves || 0);").await;
    assert!(moves.as_u64().unwrap() >= 1, "the progress bar moved");
    assert_eq!(js(&client, "return document.getElementById('upload-progress').value;").await, json!(100));
    let shown = js(&client, "return document.getElementById('upload-result').textContent;").await;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    assert!(shown.as_str().unwrap().contains(&sha256), "{shown}");
    let id = instance.as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let path = format!("/api/ec2/instances/{id}/files/tmp/console-upload.bin");
    let downloaded = download(&sandbox.admin, &path, &key).await;
    assert_eq!(hex::encode(Sha256::digest(&downloaded)), sha256, "the file on the instance is the one sent");

    // The audit log's chain.
    client.goto(&ui("/ui/audit")).await.unwrap();
    let chain = js(&client, "const c = document.getElementById('chain'); return [c.classList.contains('intact'), c.textContent.startsWith('Chain verified')];").await;
    assert_eq!(chain, json!([true, true]));
    let checkpoint = js(&client, "return document.getElementById('checkpoint').textContent;").await;
    assert!(checkpoint.as_str().unwrap().starts_with("Latest signed checkpoint: #"), "{checkpoint}");
    screenshot(&client, "audit").await;
    client.goto(&ui("/ui/budget")).await.unwrap();
    screenshot(&client, "budget").await;
    client.goto(&ui("/ui/instances")).await.unwrap();
    screenshot(&client, "instances").await;

    // Signing out closes the pages.
    click(&client, "#sign-out").await;
    until(&client, "return location.pathname;", json!("/ui/sign-in"), 10, "signed out").await;
    client.goto(&ui("/ui/fleet")).await.unwrap();
    assert!(client.current_url().await.unwrap().path().ends_with("/ui/sign-in"), "the fleet page is closed");
    println!(
        "console: kubectl patch to the browser {:.0} ms; exec first line in the browser {:.0} ms after Run",
        to_browser.as_secs_f64() * 1e3,
        first_byte.as_secs_f64() * 1e3
    );
    client.close().await.unwrap();
}

/// Sets the budget's `maxInstances` through the API with the admin key; the value it had.
fn set_budget(admin: &str, key: &str, max_instances: u64) -> u64 {
    let auth = format!("Authorization: Bearer {key}\r\n");
    let (status, before) =
        support::sandbox::http_get_with(&format!("{admin}/api/ec2/budget"), &auth).unwrap();
    assert_eq!(status, 200, "{before}");
    let before: Value = serde_json::from_str(&before).unwrap();
    let body = json!({ "maxInstances": max_instances }).to_string();
    let headers = format!("{auth}Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    let (status, after) =
        support::sandbox::http_request("PUT", &format!("{admin}/api/ec2/budget"), &headers, &body).unwrap();
    assert_eq!(status, 200, "{after}");
    before["limits"]["maxInstances"].as_u64().unwrap()
}

/// GET `path` from the sandbox's admin address with the admin key: the body (asserting 200).
async fn download(admin: &str, path: &str, key: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin.trim_start_matches("http://")).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nAuthorization: Bearer {key}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&response[..end]);
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    response.split_off(end)
}
