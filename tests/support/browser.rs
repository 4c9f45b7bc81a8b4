//! The headless Chromium both browser test binaries (`tests/browser`,
//! `tests/webchat_browser`) drive: one ChromeDriver per binary, a session
//! per test, and whole-page screenshots at desktop and phone width that
//! fail on sideways scrolling. Included with `#[path]`, so it is not a test
//! binary of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use futures::FutureExt;
use serde_json::json;

pub(crate) const WIDTHS: [u32; 2] = [1280, 375];
pub(crate) const SKIP_VAR: &str = "TEXTDESK_SKIP_BROWSER";

/// The ChromeDriver every test of this binary shares: its URL, or why
/// there is none.
pub(crate) static DRIVER: OnceLock<Result<String, String>> = OnceLock::new();

pub(crate) fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(explicit) = std::env::var(env) {
        return Some(PathBuf::from(explicit)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

pub(crate) fn chromium() -> Option<PathBuf> {
    find_program(
        "TEXTDESK_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    )
}

/// Starts ChromeDriver on a free port. It runs under a shell that waits on
/// its standard input: when this test process exits, for whatever reason,
/// the pipe closes and the shell stops the driver, so no driver outlives
/// the tests.
pub(crate) fn start_driver() -> Result<String, String> {
    let driver = find_program("TEXTDESK_CHROMEDRIVER", &["chromedriver"]).ok_or(
        "chromedriver not found: install Debian's `chromium` and `chromium-driver` \
         (apt-get install -y chromium chromium-driver; .ci/run does), \
         or set TEXTDESK_SKIP_BROWSER=1 to skip the browser tests",
    )?;
    chromium().ok_or(
        "chromium not found: install Debian's `chromium` and `chromium-driver` \
         (apt-get install -y chromium chromium-driver; .ci/run does), \
         or set TEXTDESK_SKIP_BROWSER=1 to skip the browser tests",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port for chromedriver: {e}"))?
        .port();
    let log = screenshots_dir().join("chromedriver.log");
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --port="$1" --log-path="$2" & driver=$!; read _ignored; kill $driver"#)
        .arg(&driver)
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", driver.display()))?;
    // The pipe's write end lives as long as this process does.
    std::mem::forget(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "chromedriver did not listen on port {port} within 20 s (log: {})",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(format!("http://127.0.0.1:{port}"))
}

pub(crate) fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A headless Chromium session, or `None` when the browser tests are
/// skipped on purpose. Any other failure to get one fails the test.
pub(crate) async fn browser() -> Option<Client> {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("{SKIP_VAR}=1: browser test skipped");
        return None;
    }
    let driver = DRIVER
        .get_or_init(start_driver)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"));
    let binary = chromium().expect("chromium was found when the driver started");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary,
            "args": [
                "--headless=new",
                // Root in a container has no user namespace to sandbox with.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--window-size=1280,900",
            ]
        }),
    );
    // fantoccini's rustls and the app's both link a crypto backend: pick
    // the app's, as `calendar::google` does.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = ClientBuilder::rustls()
        .expect("TLS roots for the WebDriver client")
        .capabilities(capabilities)
        .connect(&driver)
        .await
        .unwrap_or_else(|e| panic!("chromedriver at {driver} could not start chromium: {e}"));
    Some(client)
}

/// Runs `steps` with a fresh browser session and closes it whatever
/// happens, so a failed test leaves no Chromium behind.
pub(crate) async fn with_browser<F, Fut>(steps: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(client) = browser().await else {
        return;
    };
    let outcome = std::panic::AssertUnwindSafe(steps(client.clone()))
        .catch_unwind()
        .await;
    let _ = client.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Clicks the element with this id (a button or link the page must have).
#[allow(dead_code)] // each test binary uses the helpers it needs
pub(crate) async fn click(client: &Client, id: &str) {
    client
        .find(fantoccini::Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id} on the page: {e}"))
        .click()
        .await
        .unwrap();
}

/// The current page, whole, at each width: the window is made as tall as
/// the page so nothing below the fold is missed. Also fails the test when
/// the page scrolls sideways at that width (something overflows).
pub(crate) async fn screenshot(client: &Client, name: &str) {
    for width in WIDTHS {
        client.set_window_size(width, 900).await.unwrap();
        let inner = client.execute("return window.innerWidth", vec![]).await.unwrap();
        assert_eq!(
            inner.as_u64(),
            Some(u64::from(width)),
            "{name}: the viewport is {width} px"
        );
        let height = client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 8000);
        let chrome = 900 - inner_height(client).await.min(900);
        client
            .set_window_size(width, u32::try_from(height).unwrap() + chrome)
            .await
            .unwrap();
        let overflow = client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap();
        // A box that scrolls sideways hides part of itself behind a
        // scrollbar (code blocks may).
        let scrollers = client
            .execute(
                "return Array.from(document.querySelectorAll('body *')).filter(e => {
                    const x = getComputedStyle(e).overflowX;
                    return (x === 'auto' || x === 'scroll') && e.tagName !== 'PRE'
                        && e.scrollWidth > e.clientWidth;
                 }).map(e => e.tagName.toLowerCase() + '.' + e.className)",
                vec![],
            )
            .await
            .unwrap();
        let png = client.screenshot().await.unwrap();
        let file = format!("{name}-{width}.png");
        // A blank or failed capture is a few hundred bytes.
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 2_000,
            "{file}: not a real capture"
        );
        std::fs::write(screenshots_dir().join(&file), png).unwrap();
        assert_eq!(
            overflow.as_i64(),
            Some(0),
            "{file}: the page is wider than the window (scrolls sideways)"
        );
        assert_eq!(
            scrollers,
            json!([]),
            "{file}: these boxes scroll sideways at {width} px"
        );
    }
    client.set_window_size(1280, 900).await.unwrap();
}

pub(crate) async fn inner_height(client: &Client) -> u32 {
    client
        .execute("return window.innerHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .and_then(|h| u32::try_from(h).ok())
        .unwrap_or(900)
}
