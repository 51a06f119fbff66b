//! # Upload rules (issue 17 item 5, PROTOCOL.md §10 item 19)
//!
//! What an uploaded file must satisfy, decided without IO: the name ([`check_name`]), the type
//! sniffed from the first bytes ([`sniff`], executable/script signatures at offset 0 only), the
//! size limit default ([`MAX_UPLOAD_SIZE_DEFAULT`]), the per-user upload rate
//! ([`UPLOAD_RATE_DEFAULT`]), and the signed, expiring file URL ([`UrlSigner`]): an HMAC-SHA256
//! over the file id and the expiry (Unix seconds), with a key derived from a server secret.
//!
//! HTML and SVG are refused outright (the simplest honest rule against scripts inside them):
//! a scan for `<script`/`on*=` would miss encodings, and nothing in a chat needs them.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::rate::RateLimit;

/// Default upload size limit (`MAX_UPLOAD_SIZE`): the original's 100 MB, as 100 MiB.
pub const MAX_UPLOAD_SIZE_DEFAULT: u64 = 100 * 1024 * 1024;

/// Default per-user upload rate (`UPLOAD_RATE_LIMIT` per `UPLOAD_RATE_WINDOW`): 20 per minute.
pub const UPLOAD_RATE_DEFAULT: RateLimit = RateLimit::new(20, Duration::from_secs(60));

/// Default lifetime of a signed `file_url` (`FILE_URL_TTL`): 24 hours.
pub const FILE_URL_TTL_DEFAULT: Duration = Duration::from_secs(24 * 60 * 60);

/// How many leading bytes [`sniff`] needs to decide (more are ignored).
pub const SNIFF_BYTES: usize = 8192;

/// Longest accepted file name in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Largest uploaded image sent to a vision-capable model (5 MiB, Anthropic's per-image limit;
/// OpenAI's is larger): a bigger one stays a file link the model does not see.
pub const MAX_VISION_IMAGE_BYTES: u64 = 5 * 1024 * 1024;

/// Most images sent with one message (the newest are kept).
pub const MAX_VISION_IMAGES: usize = 4;

/// Image types both providers' vision APIs take.
pub const VISION_IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Whether an upload of `content_type` and `size` bytes may go to a vision-capable model.
pub fn vision_image(content_type: &str, size: u64) -> bool {
    size > 0 && size <= MAX_VISION_IMAGE_BYTES && VISION_IMAGE_TYPES.contains(&content_type)
}

/// Why an upload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Larger than the limit (`INVALID_FILE_SIZE`, 413).
    #[error("File exceeds the maximum upload size of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Zero bytes (`INVALID_FILE_SIZE`, 400).
    #[error("File is empty")]
    Empty,
    /// A name with a path separator, `..`, NUL, a control character, or too long
    /// (`INVALID_FILE_TYPE`, 415).
    #[error("Invalid file name")]
    BadName,
    /// A name with an executable or script extension, e.g. `report.pdf.exe` (415).
    #[error("Executable or script file names are not allowed")]
    DangerousExtension,
    /// Bytes starting with an executable or script signature (415).
    #[error("Executable or script files are not allowed")]
    Executable,
    /// A type outside the allow-list, or HTML/SVG (415).
    #[error("File type not allowed")]
    TypeNotAllowed,
}

impl Refusal {
    /// The error code of the answer (`INVALID_FILE_SIZE` or `INVALID_FILE_TYPE`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } | Refusal::Empty => "INVALID_FILE_SIZE",
            _ => "INVALID_FILE_TYPE",
        }
    }

    /// The HTTP status: 413 too large, 400 empty, 415 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::TooLarge { .. } => 413,
            Refusal::Empty => 400,
            _ => 415,
        }
    }
}

/// Extensions that name something a system would run (checked on every dotted part of a name).
const DANGEROUS_EXTENSIONS: &[&str] = &[
    "exe", "com", "bat", "cmd", "scr", "pif", "msi", "msp", "dll", "cpl", "jar", "js", "jse",
    "vbs", "vbe", "wsf", "wsh", "ps1", "psm1", "sh", "bash", "zsh", "csh", "php", "phtml", "pl",
    "py", "rb", "cgi", "apk", "app", "elf", "bin", "run", "hta", "lnk", "reg", "html", "htm",
    "xhtml", "svg", "svgz",
];

/// Checks a client-supplied file name: non-empty, at most [`MAX_NAME_BYTES`], no `/`, `\`,
/// `..`, NUL or other control character, and no executable/script extension in any of its
/// dotted parts after the first (so `a.pdf.exe` and `a.exe.pdf` are both refused).
pub fn check_name(name: &str) -> Result<(), Refusal> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.contains(['/', '\\'])
        || name.contains("..")
        || name.chars().any(char::is_control);
    if bad {
        return Err(Refusal::BadName);
    }
    let dangerous = name
        .split('.')
        .skip(1)
        .any(|part| DANGEROUS_EXTENSIONS.contains(&part.to_ascii_lowercase().as_str()));
    if dangerous {
        return Err(Refusal::DangerousExtension);
    }
    Ok(())
}

/// Signatures of executables and scripts, matched at offset 0 only (PROTOCOL.md §10 item 19:
/// the original matched anywhere and refused harmless files containing `MZ`).
const EXECUTABLE_SIGNATURES: &[&[u8]] = &[
    b"MZ",               // Windows PE / DOS
    b"\x7fELF",          // ELF
    b"\xfe\xed\xfa\xce", // Mach-O 32
    b"\xfe\xed\xfa\xcf", // Mach-O 64
    b"\xce\xfa\xed\xfe", // Mach-O 32, little-endian
    b"\xcf\xfa\xed\xfe", // Mach-O 64, little-endian
    b"\xca\xfe\xba\xbe", // Mach-O universal / Java class
    b"#!",               // script with an interpreter line
    b"<?php",            // PHP
    b"\x00asm",          // WebAssembly
    b"dex\n",            // Android
];

/// The allow-list of sniffed types: common images, office documents, audio, video,
/// zip/gzip/tar. (CSV, JSON and plain text have no magic bytes: see [`sniff`].)
fn allowed(mime: &str) -> bool {
    const EXACT: &[&str] = &[
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/rtf",
    ];
    let media =
        mime.starts_with("image/") || mime.starts_with("audio/") || mime.starts_with("video/");
    (media && mime != "image/svg+xml") || EXACT.contains(&mime)
}

/// Decides the stored type of a file from its first bytes (`head`, at least the first
/// [`SNIFF_BYTES`] or the whole file) and its name. The client's `Content-Type` is never used.
///
/// Binary formats are recognised by the `infer` crate and must be on the allow-list. Bytes no
/// format matches are accepted only as text — valid UTF-8 (a character cut at the end of `head`
/// is fine) without NUL — and then typed by the name: `.csv` → `text/csv`, `.json` →
/// `application/json`, anything else `text/plain`; text that looks like HTML, SVG or XML is
/// refused.
pub fn sniff(head: &[u8], name: &str) -> Result<&'static str, Refusal> {
    if EXECUTABLE_SIGNATURES.iter().any(|sig| head.starts_with(sig)) {
        return Err(Refusal::Executable);
    }
    if let Some(kind) = infer::get(head) {
        let mime = kind.mime_type();
        return if allowed(mime) { Ok(mime) } else { Err(Refusal::TypeNotAllowed) };
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // A multi-byte character cut by the end of the sniffed prefix.
        Err(error) if error.error_len().is_none() => {
            std::str::from_utf8(&head[..error.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return Err(Refusal::TypeNotAllowed),
    };
    if text.contains('\0') || looks_like_markup(text) {
        return Err(Refusal::TypeNotAllowed);
    }
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase());
    Ok(match extension.as_deref() {
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        _ => "text/plain",
    })
}

/// HTML, SVG or XML at the start of a text (after whitespace and a BOM).
fn looks_like_markup(text: &str) -> bool {
    let start = text.trim_start_matches('\u{feff}').trim_start();
    let prefix: String = start.chars().take(64).collect::<String>().to_ascii_lowercase();
    ["<!doctype", "<html", "<svg", "<?xml", "<script", "<head", "<body", "<iframe"]
        .iter()
        .any(|tag| prefix.starts_with(tag))
}

/// Whether a served file may be shown inline (images, audio, video except SVG); everything else
/// is `Content-Disposition: attachment`.
pub fn inline_allowed(content_type: &str) -> bool {
    let media = content_type.starts_with("image/")
        || content_type.starts_with("audio/")
        || content_type.starts_with("video/");
    media && !content_type.contains("svg")
}

/// Whether `id` has the shape of a generated file id (32 lowercase hex digits): anything else
/// is never looked up in storage.
pub fn is_file_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The path of a stored file under the route prefix: `{P}/files/{file_id}`.
pub fn file_path(prefix: &str, file_id: &str) -> String {
    format!("{}/files/{file_id}", prefix.trim_end_matches('/'))
}

/// Whether `url` is one of this server's own file URLs — `{P}/files/{file_id}`, optionally with
/// a query of plain `key=value` pairs — which `file_upload` frames may carry although it is not
/// an `https` URL (the route itself checks the signature or the caller when it is fetched).
pub fn is_own_file_url(prefix: &str, url: &str) -> bool {
    let Some(rest) = url.strip_prefix(&file_path(prefix, "")) else { return false };
    let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
    is_file_id(id)
        && query
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'&' | b'_' | b'-'))
}

/// Signs and checks `file_url` capabilities.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(<key>)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl UrlSigner {
    /// A signer whose key is derived from `secret` (the JWT secret) for this purpose only, so a
    /// signature never doubles as anything else.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"chatbox file url signing key v1");
        UrlSigner { key: mac.finalize().into_bytes().into() }
    }

    fn mac(&self, file_id: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(file_id.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The hex signature of `file_id` valid until `expires` (Unix seconds).
    pub fn sign(&self, file_id: &str, expires: i64) -> String {
        let bytes = self.mac(file_id, expires).finalize().into_bytes();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `signature` (hex) signs `file_id` until `expires` and `now` (Unix seconds) is
    /// not past it. The comparison is constant-time.
    pub fn verify(&self, file_id: &str, expires: i64, signature: &str, now: i64) -> bool {
        if now > expires || signature.len() != 64 {
            return false;
        }
        let Some(bytes) = decode_hex(signature) else { return false };
        self.mac(file_id, expires).verify_slice(&bytes).is_ok()
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_common_image_types_within_the_bound_go_to_vision_models() {
        assert!(vision_image("image/png", 67));
        assert!(vision_image("image/webp", MAX_VISION_IMAGE_BYTES));
        assert!(!vision_image("image/png", MAX_VISION_IMAGE_BYTES + 1));
        assert!(!vision_image("image/png", 0));
        assert!(!vision_image("image/bmp", 10));
        assert!(!vision_image("application/pdf", 10));
    }

    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

    #[test]
    fn names() {
        assert_eq!(check_name("photo.png"), Ok(()));
        assert_eq!(check_name("my report v2.pdf"), Ok(()));
        for bad in ["", "../x", "a/b.png", "a\\b.png", "a\0.png", "x..png", "a\n.png"] {
            assert_eq!(check_name(bad), Err(Refusal::BadName), "{bad:?}");
        }
        assert_eq!(check_name(&"a".repeat(256)), Err(Refusal::BadName));
        for bad in ["report.pdf.exe", "a.EXE", "a.exe.pdf", "run.sh", "page.html", "x.svg"] {
            assert_eq!(check_name(bad), Err(Refusal::DangerousExtension), "{bad:?}");
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(PNG, "a.png"), Ok("image/png"));
        assert_eq!(sniff(b"%PDF-1.7\n", "a.pdf"), Ok("application/pdf"));
        assert_eq!(sniff(b"MZ\x90\0\x03", "a.png"), Err(Refusal::Executable));
        assert_eq!(sniff(b"\x7fELF\x02\x01", "a.png"), Err(Refusal::Executable));
        assert_eq!(sniff(b"#!/bin/sh\nrm -rf /", "a.txt"), Err(Refusal::Executable));
        // Signatures count at offset 0 only: text mentioning MZ is fine.
        assert_eq!(sniff(b"hello MZ world", "a.txt"), Ok("text/plain"));
        assert_eq!(sniff(b"a,b\n1,2\n", "t.csv"), Ok("text/csv"));
        assert_eq!(sniff(b"{\"a\":1}", "t.json"), Ok("application/json"));
        assert_eq!(sniff(b"<svg onload=alert(1)>", "a.txt"), Err(Refusal::TypeNotAllowed));
        assert_eq!(sniff(b"  <!DOCTYPE html><script>", "a.txt"), Err(Refusal::TypeNotAllowed));
        assert_eq!(sniff(b"\xff\xfe\0\x01\x02", "a.bin.txt"), Err(Refusal::TypeNotAllowed));
        // A multi-byte character cut at the end of the prefix is still text.
        assert_eq!(sniff("héllo".as_bytes().split_at(2).0, "a.txt"), Ok("text/plain"));
    }

    #[test]
    fn codes_and_statuses() {
        assert_eq!(Refusal::TooLarge { limit: 1 }.code(), "INVALID_FILE_SIZE");
        assert_eq!(Refusal::TooLarge { limit: 1 }.status(), 413);
        assert_eq!(Refusal::Empty.status(), 400);
        assert_eq!(Refusal::Executable.code(), "INVALID_FILE_TYPE");
        assert_eq!(Refusal::BadName.status(), 415);
    }

    #[test]
    fn signatures_verify_expire_and_resist_tampering() {
        let signer = UrlSigner::from_secret(b"secret");
        let id = "0123456789abcdef0123456789abcdef";
        let sig = signer.sign(id, 1000);
        assert!(signer.verify(id, 1000, &sig, 999));
        assert!(signer.verify(id, 1000, &sig, 1000));
        assert!(!signer.verify(id, 1000, &sig, 1001), "expired");
        assert!(!signer.verify(id, 1001, &sig, 999), "expiry changed");
        assert!(!signer.verify("0123456789abcdef0123456789abcdee", 1000, &sig, 999));
        let mut tampered = sig.clone();
        tampered.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
        assert!(!signer.verify(id, 1000, &tampered, 999));
        assert!(!signer.verify(id, 1000, "zz", 999));
        assert!(!UrlSigner::from_secret(b"other").verify(id, 1000, &sig, 999));
    }

    #[test]
    fn inline_and_ids() {
        assert!(inline_allowed("image/png"));
        assert!(!inline_allowed("image/svg+xml"));
        assert!(!inline_allowed("application/pdf"));
        assert!(is_file_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_file_id("../etc/passwd"));
        assert!(!is_file_id("0123456789ABCDEF0123456789abcdef"));
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(file_path("/chatbox/", id), format!("/chatbox/files/{id}"));
        assert!(is_own_file_url("/chatbox", &format!("/chatbox/files/{id}?expires=1&sig=ab")));
        assert!(is_own_file_url("/", &format!("/files/{id}")));
        assert!(!is_own_file_url("/chatbox", &format!("/other/files/{id}")));
        assert!(!is_own_file_url("/chatbox", "/chatbox/files/../x"));
        assert!(!is_own_file_url("/chatbox", &format!("/chatbox/files/{id}?a=<b>")));
        assert!(!is_own_file_url("/chatbox", &format!("//evil/chatbox/files/{id}")));
    }
}
