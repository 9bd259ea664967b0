//! Self-test of the browser client against a real headless Chromium: a tiny
//! HTTP server on 127.0.0.1 serves a form page and a page whose script (a
//! separate file) writes into the document; the test drives them end to end.
//! Skipped (with a note) when Chromium is not installed, except under CI.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use patchbay_testkit::browser::{artifacts_dir, browser};
use patchbay_testkit::wait_for;
use serde_json::json;

const FORM_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Testkit form</title></head>
<body>
  <h1>Search</h1>
  <form id="search" action="/search" method="get">
    <input type="text" name="q" id="q" value="">
    <select name="color" id="color">
      <option value="red">Red</option>
      <option value="green">Green</option>
      <option value="blue">Blue</option>
    </select>
    <button type="submit" id="go">Go</button>
  </form>
  <p id="hidden" style="display:none">invisible</p>
  <a id="to-script" href="/script" data-kind="internal">Script page</a>
</body></html>"#;

const SCRIPT_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Testkit script</title>
<script src="/app.js" defer></script></head>
<body><div id="out"></div></body></html>"#;

/// Writes after a delay, so that waiting (not a lucky first look) is tested.
const APP_JS: &str = r"setTimeout(function () {
  document.getElementById('out').textContent = 'written by ' + 'script';
}, 150);";

/// Serves the pages above on a free port, one thread per connection
/// (Chromium opens speculative connections that may never send a request).
fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    addr
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers (GET requests only: no body).
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (status, kind, body, cookie) = match path {
        "/script" => ("200 OK", "text/html; charset=utf-8", SCRIPT_PAGE, ""),
        "/app.js" => ("200 OK", "text/javascript; charset=utf-8", APP_JS, ""),
        "/favicon.ico" => ("404 Not Found", "text/plain", "", ""),
        _ => (
            "200 OK",
            "text/html; charset=utf-8",
            FORM_PAGE,
            "Set-Cookie: served=yes; Path=/; HttpOnly\r\n",
        ),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{cookie}Connection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn drives_chromium_through_forms_links_and_scripts() {
    let started = Instant::now();
    let Some(b) = browser() else { return };
    let ready = started.elapsed();
    let base = format!("http://{}", serve());

    b.goto(&format!("{base}/"));
    assert_eq!(b.title(), "Testkit form");
    assert!(b.source().contains(r#"id="search""#));
    assert!(b.try_find("#does-not-exist").is_none());
    assert_eq!(b.find_all("#color option").len(), 3);
    assert!(b.find("h1").is_displayed());
    assert!(!b.find("#hidden").is_displayed());
    let link = b.find("a#to-script");
    assert_eq!(link.attr("data-kind").as_deref(), Some("internal"));
    assert_eq!(link.attr("title"), None);
    assert_eq!(link.prop("href"), json!(format!("{base}/script")));
    assert_eq!(b.find("form").find("button").text(), "Go");

    // The cookie set by the server is visible, and can be deleted.
    let cookies = b.cookies();
    assert!(
        cookies
            .iter()
            .any(|c| c["name"] == "served" && c["value"] == "yes"),
        "{cookies:?}"
    );
    b.delete_cookies();
    assert!(b.cookies().is_empty());

    // Type, select and submit: the query string carries what was entered.
    let q = b.find("#q");
    q.type_text("first");
    q.clear();
    assert_eq!(q.value(), "");
    q.type_text("hello world");
    assert_eq!(q.value(), "hello world");
    let color = b.find("#color");
    color.select_option("green");
    assert_eq!(color.value(), "green");
    assert_eq!(color.prop("selectedIndex"), json!(1));
    b.find("#go").click();
    let url = wait_for("the form submission", Duration::from_secs(5), || {
        Some(b.url()).filter(|u| u.contains("/search?"))
    });
    assert!(url.starts_with(&format!("{base}/search?")), "{url}");
    assert!(url.contains("q=hello+world"), "{url}");
    assert!(url.contains("color=green"), "{url}");

    // A link to a page whose script, served by the same server, writes text.
    b.find("#to-script").click();
    let out = b.wait_for_text("#out", "written by script", Duration::from_secs(5));
    assert_eq!(out.text(), "written by script");
    assert_eq!(b.title(), "Testkit script");
    assert_eq!(
        b.execute(
            "return arguments[0].textContent + ' / ' + arguments[1]",
            &[out.as_arg(), json!(42)]
        ),
        json!("written by script / 42")
    );

    b.set_window_size(800, 600);
    let width = b.execute("return window.outerWidth", &[]);
    assert_eq!(width, json!(800));
    assert_eq!(b.command("GET", "/window/rect", None)["height"], json!(600));

    let shot = artifacts_dir().join("testkit").join("script-page.png");
    b.screenshot(&shot);
    let png = std::fs::read(&shot).expect("read the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        shot.display()
    );
    assert!(
        png.len() > 1000,
        "suspiciously small PNG: {} bytes",
        png.len()
    );

    b.back();
    assert!(b.url().contains("/search?"), "{}", b.url());

    drop(b);
    eprintln!(
        "browser self-test: session ready in {ready:?}, whole test {:?}, screenshot {}",
        started.elapsed(),
        shot.display()
    );
}

#[test]
fn parallel_browsers_have_separate_profiles() {
    let started = Instant::now();
    let (Some(a), Some(b)) = std::thread::scope(|s| {
        let a = s.spawn(browser);
        let b = s.spawn(browser);
        (a.join().expect("start a"), b.join().expect("start b"))
    }) else {
        return;
    };
    let base = format!("http://{}", serve());
    a.goto(&format!("{base}/script"));
    b.goto(&format!("{base}/script"));
    a.execute("document.cookie = 'only=a; path=/'", &[]);
    assert!(a.cookies().iter().any(|c| c["name"] == "only"));
    assert!(!b.cookies().iter().any(|c| c["name"] == "only"));
    assert_ne!(a.session_id(), b.session_id());
    drop((a, b));
    eprintln!("two parallel browsers: {:?}", started.elapsed());
}
