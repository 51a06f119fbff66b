//! The web pages and their assets, embedded from `shell/web/` and served from the binary.
//!
//! Five pages: an index of the others (`{P}/`), the chat, the user's sessions, the admin console
//! and the shared (read-only) view.
//! Pages carry no secret and need no authentication: their scripts take the JWT (from `?token=`,
//! the embedding page or a paste in `--dev` mode) to the API and the WebSocket. Every page is
//! sent with a strict Content-Security-Policy (no inline script or style, everything from this
//! origin) whose `frame-ancestors` follows `FRAME_ANCESTORS` (README, "Web pages").

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chatbox_core::config::is_csp_source_list;
use http::{header, HeaderValue};
use include_dir::{include_dir, Dir};

use super::router::{not_found, route};

/// The scripts and stylesheets under `{P}/assets/`.
static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web/assets");

/// The marker each page's `<html>` element carries; `--dev` turns it to `data-dev="true"` so the
/// page offers a token form (no extra endpoint, so the page knows before any request).
const DEV_MARKER: &str = "data-dev=\"false\"";

/// How the pages are served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageOptions {
    /// `serve --dev`: the pages offer to paste a token.
    pub dev: bool,
}

/// The rendered pages (dev marker applied) and their CSP, shared by the handlers.
#[derive(Debug)]
struct Pages {
    index: Bytes,
    chat: Bytes,
    my_sessions: Bytes,
    console: Bytes,
    view: Bytes,
    csp: HeaderValue,
}

impl Pages {
    fn new(options: PageOptions, ancestors: Option<&str>) -> Self {
        let render = |html: &str| {
            debug_assert!(html.contains(DEV_MARKER), "every page carries the dev marker");
            if options.dev {
                Bytes::from(html.replacen(DEV_MARKER, "data-dev=\"true\"", 1))
            } else {
                Bytes::from(html.to_string())
            }
        };
        Pages {
            index: render(include_str!("../../web/index.html")),
            chat: render(include_str!("../../web/chat.html")),
            my_sessions: render(include_str!("../../web/my-sessions.html")),
            console: render(include_str!("../../web/console.html")),
            view: render(include_str!("../../web/view.html")),
            csp: page_csp(ancestors),
        }
    }
}

/// The `frame-ancestors` sources of `FRAME_ANCESTORS`, space-joined, or `None` when none is
/// configured. Entries may themselves hold several space-separated sources; an entry with a
/// character that could end the directive or the header (`;`, `,`, controls, non-ASCII) is
/// dropped whole, with a warning, rather than let it rewrite the policy. (Configuration
/// validation already refuses such entries at start-up; this keeps the header safe regardless.)
pub fn frame_ancestors(configured: &[String]) -> Option<String> {
    let sources: Vec<&str> = configured
        .iter()
        .filter(|entry| {
            let ok = is_csp_source_list(entry);
            if !ok {
                tracing::warn!(entry = %entry, "FRAME_ANCESTORS entry is not valid in a CSP; ignored");
            }
            ok
        })
        .flat_map(|entry| entry.split_ascii_whitespace())
        .collect();
    (!sources.is_empty()).then(|| sources.join(" "))
}

/// `Content-Security-Policy: frame-ancestors …` for every response when `FRAME_ANCESTORS` is
/// set (the pages send their fuller policy instead); `None` when it is not.
pub fn frame_ancestors_csp(ancestors: Option<&str>) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("frame-ancestors {}", ancestors?)).ok()
}

/// The pages' policy: everything from this origin only, no inline code, no plugins, and
/// framing only by the configured ancestors (`'none'` by default).
fn page_csp(ancestors: Option<&str>) -> HeaderValue {
    let ancestors = ancestors.unwrap_or("'none'");
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors {ancestors}"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"))
}

/// The page routes under `prefix`: `/` (the index), `/chat`, `/my-sessions`, `/console`, `/view/{token}` and
/// `/assets/{file}`. `ancestors` is [`frame_ancestors`] of the configuration.
pub fn routes(prefix: &str, options: PageOptions, ancestors: Option<&str>) -> Router {
    let pages = Arc::new(Pages::new(options, ancestors));
    Router::new()
        .route(&route(prefix, "/"), get(|State(p): State<Arc<Pages>>| html(p.index.clone(), p)))
        .route(&route(prefix, "/chat"), get(|State(p): State<Arc<Pages>>| html(p.chat.clone(), p)))
        .route(
            &route(prefix, "/my-sessions"),
            get(|State(p): State<Arc<Pages>>| html(p.my_sessions.clone(), p)),
        )
        .route(
            &route(prefix, "/console"),
            get(|State(p): State<Arc<Pages>>| html(p.console.clone(), p)),
        )
        // The share token is read by the page's script from its own path.
        .route(
            &route(prefix, "/view/{token}"),
            get(|State(p): State<Arc<Pages>>| html(p.view.clone(), p)),
        )
        .route(&route(prefix, "/assets/{file}"), get(asset))
        .with_state(pages)
}

async fn html(page: Bytes, pages: Arc<Pages>) -> Response {
    let mut response = Response::new(Body::from(page));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, pages.csp.clone());
    response
}

/// `GET {P}/assets/{file}`: an embedded file with its content type, else the plain 404.
async fn asset(Path(file): Path<String>) -> Response {
    let (Some(found), Some(kind)) = (ASSETS.get_file(&file), content_type(&file)) else {
        return not_found().await;
    };
    let mut response = Response::new(Body::from(found.contents()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The content type of an asset by its extension; other files are not served.
fn content_type(file: &str) -> Option<&'static str> {
    match file.rsplit_once('.')?.1 {
        "js" => Some("text/javascript; charset=utf-8"),
        "css" => Some("text/css; charset=utf-8"),
        "svg" => Some("image/svg+xml"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every embedded file, pages included, as text.
    fn everything() -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = ASSETS
            .files()
            .map(|f| {
                let text = f.contents_utf8().expect("assets are UTF-8 text");
                (f.path().display().to_string(), text.to_string())
            })
            .collect();
        for (name, html) in [
            ("index.html", include_str!("../../web/index.html")),
            ("chat.html", include_str!("../../web/chat.html")),
            ("my-sessions.html", include_str!("../../web/my-sessions.html")),
            ("console.html", include_str!("../../web/console.html")),
            ("view.html", include_str!("../../web/view.html")),
        ] {
            files.push((name.to_string(), html.to_string()));
        }
        files
    }

    #[test]
    fn no_asset_refers_to_another_host() {
        // No CDN: the pages must work offline and under `default-src 'self'`.
        // The SVG namespace is a name, never fetched.
        const SVG_NS: &str = "http://www.w3.org/2000/svg";
        for (name, text) in everything() {
            let text = text.replace(SVG_NS, "");
            for scheme in ["http://", "https://", "ws://", "wss://", "//cdn"] {
                if let Some(at) = text.find(scheme) {
                    let line = text[..at].lines().count();
                    panic!("{name}:{line} names another host ({scheme}): no CDN, no absolute URL");
                }
            }
        }
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        for (name, text) in everything().into_iter().filter(|(n, _)| n.ends_with(".html")) {
            assert!(text.contains(DEV_MARKER), "{name} carries the dev marker");
            assert!(!text.contains("<style"), "{name}: inline style is forbidden by the CSP");
            assert!(!text.contains(" style=\""), "{name}: inline style is forbidden by the CSP");
            let handler = text.match_indices(" on").find(|(at, _)| {
                let rest = &text[at + 3..];
                let word = rest.bytes().take_while(u8::is_ascii_lowercase).count();
                word > 0 && rest[word..].starts_with('=')
            });
            assert!(handler.is_none(), "{name}: inline handlers are forbidden by the CSP");
            for (at, _) in text.match_indices("<script") {
                let tag = &text[at..at + text[at..].find('>').expect("a closed tag")];
                assert!(tag.contains(" src=\""), "{name}: inline script is forbidden: {tag}");
            }
        }
    }

    #[test]
    fn every_served_file_has_a_content_type() {
        for file in ASSETS.files() {
            let name = file.path().display().to_string();
            assert!(!name.contains('/'), "assets are flat (one path segment): {name}");
            assert!(content_type(&name).is_some(), "{name} has a content type");
        }
    }

    #[test]
    fn frame_ancestors_are_joined_and_sanitised() {
        assert_eq!(frame_ancestors(&[]), None);
        let list = ["'self'".to_string(), "https://portal.example https://b.example".to_string()];
        assert_eq!(
            frame_ancestors(&list).as_deref(),
            Some("'self' https://portal.example https://b.example")
        );
        let hostile = ["https://a.example;script-src *".to_string(), "'self'".to_string()];
        assert_eq!(frame_ancestors(&hostile).as_deref(), Some("'self'"));
        let csp = page_csp(None);
        assert!(csp.to_str().expect("ascii").ends_with("frame-ancestors 'none'"));
        let dev = Pages::new(PageOptions { dev: true }, None);
        let chat = std::str::from_utf8(&dev.chat).expect("UTF-8 page");
        assert!(chat.contains("data-dev=\"true\""));
        assert!(!chat.contains(DEV_MARKER));
    }
}
