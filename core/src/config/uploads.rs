//! The upload settings (issue 17 item 5): size limit, per-user rate, signed URL lifetime, and
//! where files are stored — `DATA_DIR/files`, or S3-compatible object storage when any
//! `UPLOAD_S3_*` setting is given. Reading ([`read`]) and rules ([`problems`]) live together
//! here so the upload feature stays in one place.

use std::time::Duration;

use super::error::ConfigError;
use super::keys::{self, SettingName};
use super::read::Reader;
use super::secret::Secret;
use crate::rate::RateLimit;
use crate::upload::{FILE_URL_TTL_DEFAULT, MAX_UPLOAD_SIZE_DEFAULT, UPLOAD_RATE_DEFAULT};

/// Default S3 region when `UPLOAD_S3_REGION` is not set.
pub const UPLOAD_S3_REGION_DEFAULT: &str = "us-east-1";

/// Upload rules and storage.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadConfig {
    /// Largest upload in bytes (`MAX_UPLOAD_SIZE`), default [`MAX_UPLOAD_SIZE_DEFAULT`].
    pub max_size: u64,
    /// Uploads per user (`UPLOAD_RATE_LIMIT` per `UPLOAD_RATE_WINDOW`).
    pub rate: RateLimit,
    /// Lifetime of a signed `file_url` (`FILE_URL_TTL`).
    pub url_ttl: Duration,
    /// S3-compatible storage, or `None` for `DATA_DIR/files`.
    pub s3: Option<S3Config>,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            max_size: MAX_UPLOAD_SIZE_DEFAULT,
            rate: UPLOAD_RATE_DEFAULT,
            url_ttl: FILE_URL_TTL_DEFAULT,
            s3: None,
        }
    }
}

/// S3-compatible object storage for uploads.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    /// Bucket (`UPLOAD_S3_BUCKET`), required.
    pub bucket: String,
    /// Endpoint URL (`UPLOAD_S3_ENDPOINT`) for non-AWS servers; empty = AWS.
    pub endpoint: String,
    /// Region (`UPLOAD_S3_REGION`), default [`UPLOAD_S3_REGION_DEFAULT`].
    pub region: String,
    /// Access key id (`UPLOAD_S3_ACCESS_KEY_ID`); with the secret, or both empty for the
    /// environment's credentials.
    pub access_key_id: String,
    /// Secret access key (`UPLOAD_S3_SECRET_ACCESS_KEY`).
    pub secret_access_key: Secret,
}

/// Reads the upload settings; any `UPLOAD_S3_*` turns S3 on (the rules then name what is
/// missing).
pub(crate) fn read(r: &mut Reader<'_>, d: &UploadConfig) -> UploadConfig {
    let max_size = r.integer(keys::MAX_UPLOAD_SIZE, d.max_size);
    let rate = RateLimit {
        limit: r.integer(keys::UPLOAD_RATE_LIMIT, d.rate.limit),
        window: r.duration(keys::UPLOAD_RATE_WINDOW, d.rate.window),
    };
    let url_ttl = r.duration(keys::FILE_URL_TTL, d.url_ttl);
    let bucket = r.text(keys::UPLOAD_S3_BUCKET, "");
    let endpoint = r.text(keys::UPLOAD_S3_ENDPOINT, "");
    let region = r.text_opt(keys::UPLOAD_S3_REGION).filter(|s| !s.is_empty());
    let access_key_id = r.text(keys::UPLOAD_S3_ACCESS_KEY_ID, "");
    let secret_access_key = r.secret(keys::UPLOAD_S3_SECRET_ACCESS_KEY);
    let any = !bucket.is_empty()
        || !endpoint.is_empty()
        || region.is_some()
        || !access_key_id.is_empty()
        || !secret_access_key.is_empty();
    let s3 = any.then(|| S3Config {
        bucket,
        endpoint,
        region: region.unwrap_or_else(|| UPLOAD_S3_REGION_DEFAULT.into()),
        access_key_id,
        secret_access_key,
    });
    UploadConfig { max_size, rate, url_ttl, s3 }
}

/// Every problem of the upload settings.
pub(crate) fn problems(uploads: &UploadConfig, errors: &mut Vec<ConfigError>) {
    let positive: [(SettingName, bool); 4] = [
        (keys::MAX_UPLOAD_SIZE, uploads.max_size == 0),
        // 0 would refuse every upload with 429, like the message and admin limits it is an error.
        (keys::UPLOAD_RATE_LIMIT, uploads.rate.limit == 0),
        (keys::UPLOAD_RATE_WINDOW, uploads.rate.window.is_zero()),
        (keys::FILE_URL_TTL, uploads.url_ttl.is_zero()),
    ];
    for (setting, zero) in positive {
        if zero {
            errors.push(ConfigError::NotPositive { setting });
        }
    }
    let Some(s3) = &uploads.s3 else { return };
    let mut missing = Vec::new();
    if s3.bucket.trim().is_empty() {
        missing.push(keys::UPLOAD_S3_BUCKET);
    }
    // Static credentials come in pairs.
    if !s3.access_key_id.is_empty() && s3.secret_access_key.is_empty() {
        missing.push(keys::UPLOAD_S3_SECRET_ACCESS_KEY);
    }
    if s3.access_key_id.is_empty() && !s3.secret_access_key.is_empty() {
        missing.push(keys::UPLOAD_S3_ACCESS_KEY_ID);
    }
    if !missing.is_empty() {
        errors.push(ConfigError::Incomplete { feature: "S3 upload storage", missing });
    }
    if !s3.endpoint.is_empty() {
        let reason = match url::Url::parse(&s3.endpoint) {
            Err(_) => Some("is not a URL"),
            Ok(url) if !matches!(url.scheme(), "http" | "https") => Some("must be http or https"),
            Ok(url) if url.host().is_none() => Some("has no host"),
            Ok(_) => None,
        };
        if let Some(reason) = reason {
            errors.push(ConfigError::InvalidUrl {
                setting: keys::UPLOAD_S3_ENDPOINT,
                reason: reason.into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::minimal as env;
    use crate::config::{load, ConfigError};

    fn problems(pairs: &[(&str, &str)]) -> Vec<String> {
        match load(&env(pairs), None) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(ConfigError::to_string).collect(),
        }
    }

    #[test]
    fn defaults_are_disk_100_mib() {
        let loaded = load(&env(&[]), None).expect("valid");
        assert_eq!(loaded.config.uploads.max_size, 100 * 1024 * 1024);
        assert!(loaded.config.uploads.s3.is_none());
    }

    #[test]
    fn s3_settings_are_read_from_env_and_file() {
        let file = "[upload.s3]\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\n";
        let loaded = load(&env(&[("UPLOAD_S3_REGION", "eu-west-1")]), Some(file)).expect("valid");
        let s3 = loaded.config.uploads.s3.expect("s3 on");
        assert_eq!((s3.bucket.as_str(), s3.region.as_str()), ("b", "eu-west-1"));
        assert_eq!(s3.endpoint, "http://127.0.0.1:9000");
    }

    #[test]
    fn every_problem_is_listed() {
        let found = problems(&[
            ("UPLOAD_S3_ENDPOINT", "ftp://x"),
            ("UPLOAD_S3_ACCESS_KEY_ID", "id"),
            ("MAX_UPLOAD_SIZE", "0"),
            ("FILE_URL_TTL", "0s"),
            ("UPLOAD_RATE_LIMIT", "0"),
        ]);
        let text = found.join("\n");
        assert!(text.contains("UPLOAD_S3_BUCKET"), "{text}");
        assert!(text.contains("UPLOAD_S3_SECRET_ACCESS_KEY"), "{text}");
        assert!(text.contains("UPLOAD_S3_ENDPOINT"), "{text}");
        assert!(text.contains("MAX_UPLOAD_SIZE"), "{text}");
        assert!(text.contains("FILE_URL_TTL"), "{text}");
        assert!(
            text.contains("UPLOAD_RATE_LIMIT / chatbox.upload_rate_limit: must be greater"),
            "{text}"
        );
    }
}
