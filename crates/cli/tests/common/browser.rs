//! A headless Chromium driven through chromedriver's W3C WebDriver
//! protocol (JSON over HTTP), for the browser tests: open a page, find an
//! element by CSS, type, click, read the page, take a screenshot.
//!
//! [`Browser::start`] returns `None` where Chromium or chromedriver is not
//! installed, saying so; in CI (`CI=true`) that fails the test instead
//! (`.ci/run` installs them).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The W3C key of an element in WebDriver's answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver and one session of headless Chromium, ended when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    /// Screenshots are written here when a test fails.
    pub name: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.save_screenshot_blocking();
        }
        // Ending the session closes Chromium; killing chromedriver alone
        // would leave it running.
        let _ = Command::new("curl")
            .args([
                "-s",
                "-m",
                "10",
                "-X",
                "DELETE",
                &format!("{}/session/{}", self.base, self.session),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of
    /// `width` × `height` CSS pixels.
    pub async fn start(name: &str, width: u32, height: u32) -> Option<Browser> {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists());
        let driver = ["/usr/bin/chromedriver"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists());
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "Chromium and chromedriver are required in CI (apt-get install chromium chromium-driver)"
                );
            }
            eprintln!("SKIPPED browser test {name}: Chromium or chromedriver is not installed");
            return None;
        };
        let port = free_port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--window-size={width},{height}")],
                "mobileEmulation": {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0}},
            }
        }}});
        let answer: Value = client
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Some(Browser {
            driver,
            base,
            session,
            client,
            name: name.to_owned(),
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    /// A WebDriver command, or its error (as while a page is replaced).
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.client.request(method, url);
        request = request.json(&body.unwrap_or_else(|| json!({})));
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = answer["value"].get("error") {
            return Err(format!("{error}: {}", answer["value"]["message"]));
        }
        Ok(answer["value"].clone())
    }

    /// Opens `url` and waits for the page.
    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The element `css` selects, or a panic naming it.
    pub async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// How many elements `css` selects.
    pub async fn count(&self, css: &str) -> usize {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found.as_array().map_or(0, Vec::len)
    }

    /// Types `text` into the element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), None)
            .await;
    }

    /// The visible text of the element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The value of a script's expression on the page.
    pub async fn script(&self, expression: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": format!("return {expression};"), "args": []})),
        )
        .await
    }

    /// Whether the page's address passes `test` and the page has loaded;
    /// false while a page is being replaced.
    async fn arrived(&self, test: impl Fn(&str) -> bool) -> bool {
        let url = self.try_call(reqwest::Method::GET, "/url", None).await;
        let ready = self
            .try_call(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": "return document.readyState;", "args": []})),
            )
            .await;
        matches!((url, ready), (Ok(url), Ok(ready)) if url.as_str().is_some_and(&test) && ready == "complete")
    }

    /// Waits (up to 10 s) until the page's address ends with `suffix`, as
    /// after a click that leads to another page; panics naming both.
    pub async fn wait_for(&self, suffix: &str) {
        let started = Instant::now();
        while !self.arrived(|url| url.ends_with(suffix)).await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "still at {}, not at …{suffix}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 10 s) until the page's address contains `part`.
    pub async fn wait_for_path_containing(&self, part: &str) {
        let started = Instant::now();
        while !self.arrived(|url| url.contains(part)).await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never reached …{part}…"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 10 s) until the element `css` selects holds `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str) {
        let started = Instant::now();
        let script = json!({
            "script": "const element = document.querySelector(arguments[0]); return element ? element.innerText : '';",
            "args": [css],
        });
        loop {
            let shown = self
                .try_call(reqwest::Method::POST, "/execute/sync", Some(script.clone()))
                .await;
            if shown.is_ok_and(|shown| shown.as_str().is_some_and(|shown| shown.contains(text))) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{css} never showed {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page's address.
    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The serious and critical accessibility problems axe-core finds on
    /// the page (WCAG 2.1 A and AA rules), one line each. `None` where
    /// axe-core is not installed (`npm ci --prefix tests/axe`); in CI that
    /// fails the test.
    pub async fn accessibility_problems(&self) -> Option<Vec<String>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/axe/node_modules/axe-core/axe.min.js");
        let Ok(axe) = std::fs::read_to_string(&path) else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("axe-core is required in CI: npm ci --prefix tests/axe");
            }
            eprintln!(
                "SKIPPED accessibility check of {}: axe-core is not installed",
                self.name
            );
            return None;
        };
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": format!("{axe}\nreturn true;"), "args": []})),
        )
        .await;
        let found = self
            .call(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({
                    "script": "const done = arguments[arguments.length - 1]; \
                        axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}) \
                        .then(result => done(result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical') \
                        .map(v => v.id + ': ' + v.help + ' (' + v.nodes.map(n => n.target.join(' ')).join(', ') + ')'))) \
                        .catch(error => done(['axe failed: ' + error]));",
                    "args": [],
                })),
            )
            .await;
        Some(
            found
                .as_array()
                .map(|problems| {
                    problems
                        .iter()
                        .filter_map(|problem| problem.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    fn save_screenshot_blocking(&self) {
        let url = format!("{}/session/{}/screenshot", self.base, self.session);
        let Ok(output) = Command::new("curl").args(["-s", &url]).output() else {
            return;
        };
        let Ok(answer) = serde_json::from_slice::<Value>(&output.stdout) else {
            return;
        };
        let Some(png) = answer["value"].as_str() else {
            return;
        };
        use base64::Engine as _;
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(png) {
            let folder =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
            let _ = std::fs::create_dir_all(&folder);
            let path = folder.join(format!("{}.png", self.name));
            if std::fs::write(&path, bytes).is_ok() {
                eprintln!("screenshot of the failed page: {}", path.display());
            }
        }
    }
}
