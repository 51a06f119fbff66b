#![cfg(not(madsim))]
//! The web pages through the real binary (issue 8): the chat page, my sessions, the admin
//! console and the shared view are served under the prefix as HTML with a strict CSP whose
//! `frame-ancestors` follows `FRAME_ANCESTORS` (and then replaces `X-Frame-Options` on every
//! response); their scripts and stylesheets are served from the binary with the right content
//! type, every reference in a page (and every module import) resolves, and an unknown asset is
//! the plain `404 page not found`.

use std::collections::BTreeSet;

use chatbox_tests::harness::{HttpResponse, Server, ServerOpts};
use chatbox_tests::http::{assert_not_found_page, get, path, request};
use chatbox_tests::upstream::Upstream;

/// The page routes (after the prefix).
const PAGES: [&str; 5] = ["/", "/chat", "/my-sessions", "/console", "/view/0123456789abcdef"];

/// Asserts a page answer: 200, HTML, the page policy with `frame-ancestors <ancestors>`.
fn assert_page(response: &HttpResponse, ancestors: &str) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = response.header("content-security-policy").expect("a CSP on every page");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(csp.ends_with(&format!("frame-ancestors {ancestors}")), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "no inline code: {csp}");
    assert!(response.body.starts_with("<!DOCTYPE html>"), "{}", response.body);
    response.assert_common_security_headers();
}

/// The values of `attr="…"` in `html`.
fn attribute_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// `reference` resolved against the directory of `base` (a path), as a browser does for the
/// relative references the pages use (`assets/x`, `../assets/x`, `./x.js`).
fn resolve(base: &str, reference: &str) -> String {
    assert!(
        !reference.contains("//") && !reference.starts_with('/'),
        "references are relative, never to another host: {reference}"
    );
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for part in reference.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Module specifiers imported by a script (`from './x.js'`).
fn imports(script: &str) -> Vec<String> {
    script
        .match_indices("from '")
        .filter_map(|(at, _)| {
            let rest = &script[at + 6..];
            rest.find('\'').map(|end| rest[..end].to_string())
        })
        .collect()
}

#[tokio::test]
async fn pages_are_html_with_a_strict_policy_that_forbids_framing_by_default() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    for page in PAGES {
        let response = get(&server, page, None).await;
        assert_page(&response, "'none'");
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{page}");
        assert!(
            response.body.contains("<html lang=\"en\" data-dev=\"false\">"),
            "{page}: not dev mode"
        );
    }
    // API responses keep the four headers and get no policy of their own by default.
    let health = get(&server, "/healthz", None).await;
    health.assert_security_headers();
    assert_eq!(health.header("content-security-policy"), None);
    // A page route takes GET only; a path below a page is unknown.
    assert_not_found_page(&chatbox_tests::http::post(&server, "/chat", None).await);
    assert_not_found_page(&get(&server, "/chat/extra", None).await);
    assert_not_found_page(&get(&server, "/view", None).await);
}

#[tokio::test]
async fn every_reference_of_every_page_resolves_to_an_asset_with_its_type() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let mut pending: Vec<String> = Vec::new();
    for page in PAGES {
        let page_path = path(page);
        let html = get(&server, page, None).await.body;
        let scripts = attribute_values(&html, "src");
        let links = attribute_values(&html, "href");
        assert!(!scripts.is_empty(), "{page} loads a script");
        assert!(links.iter().any(|l| l.ends_with("style.css")), "{page} loads the stylesheet");
        for reference in scripts.iter().chain(&links) {
            pending.push(resolve(&page_path, reference));
        }
        // Links between pages are the page names (`chat`, `my-sessions`), not assets.
        pending.retain(|p| p.contains("/assets/"));
    }
    let mut seen = BTreeSet::new();
    while let Some(asset) = pending.pop() {
        if !seen.insert(asset.clone()) {
            continue;
        }
        let response = request(server.addr(), "GET", &asset, &[]).await;
        assert_eq!(response.status, 200, "{asset}: {response:?}");
        let expected = match asset.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset kind {other:?}: {asset}"),
        };
        assert_eq!(response.header("content-type"), Some(expected), "{asset}");
        response.assert_security_headers();
        if asset.ends_with(".js") {
            for import in imports(&response.body) {
                pending.push(resolve(&asset, &import));
            }
        }
    }
    for expected in
        ["index.js", "chat.js", "sessions.js", "console.js", "view.js", "common.js", "markdown.js"]
    {
        assert!(seen.contains(&path(&format!("/assets/{expected}"))), "{expected} in {seen:?}");
    }

    for unknown in ["/assets/nope.js", "/assets/chat.html", "/assets/", "/assets/a/b.js"] {
        assert_not_found_page(&get(&server, unknown, None).await);
    }
}

#[tokio::test]
async fn the_index_links_every_page() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let index = get(&server, "/", None).await;
    assert_page(&index, "'none'");
    let links = attribute_values(&index.body, "href");
    for page in ["chat", "my-sessions", "console"] {
        assert!(links.iter().any(|l| l == page), "{page} linked: {links:?}");
        let target = request(server.addr(), "GET", &resolve(&path("/"), page), &[]).await;
        assert_page(&target, "'none'");
    }
}

#[tokio::test]
async fn frame_ancestors_replace_x_frame_options_on_every_response() {
    let upstream = Upstream::start().await;
    let opts = ServerOpts::with_upstream(&upstream)
        .env("FRAME_ANCESTORS", "'self' https://portal.example");
    let server = Server::start(opts).await;
    let ancestors = "'self' https://portal.example";

    let page = get(&server, "/chat", None).await;
    assert_page(&page, ancestors);
    assert_eq!(page.header("x-frame-options"), None, "{page:?}");

    for route in ["/healthz", "/sessions", "/assets/chat.js", "/nope"] {
        let response = get(&server, route, None).await;
        assert_eq!(response.header("x-frame-options"), None, "{route}: {response:?}");
        assert_eq!(
            response.header("content-security-policy"),
            Some(format!("frame-ancestors {ancestors}").as_str()),
            "{route}"
        );
        response.assert_common_security_headers();
    }
}

#[tokio::test]
async fn pages_sit_at_the_root_when_the_prefix_is_slash() {
    let upstream = Upstream::start().await;
    let server =
        Server::start(ServerOpts::with_upstream(&upstream).env("CHATBOX_PATH_PREFIX", "/")).await;
    for page in ["/", "/chat", "/my-sessions", "/console", "/view/abc"] {
        let response = request(server.addr(), "GET", page, &[]).await;
        assert_page(&response, "'none'");
    }
    let script = request(server.addr(), "GET", "/assets/chat.js", &[]).await;
    assert_eq!(script.status, 200, "{script:?}");
}
