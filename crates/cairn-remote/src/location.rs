//! Store locations as the user writes them: a path, `file://PATH`, or
//! `s3://bucket/prefix`, with the S3 endpoint, region, addressing style and
//! credentials taken from flags, then the usual `AWS_*` variables, then
//! HitKeep's `HITKEEP_S3_*` names.

use std::fmt;
use std::path::PathBuf;

use crate::error::{RemoteError, Result};

/// Where a store is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Local(PathBuf),
    /// A bucket and prefix on S3-compatible object storage.
    S3(S3Settings),
}

/// S3 settings given on the command line (each overrides its variables).
#[derive(Clone, Debug, Default)]
pub struct S3Flags {
    /// Endpoint URL (`http://127.0.0.1:8333`); AWS's own when absent.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// self-hosted servers need. Defaults to on when an endpoint is given.
    pub path_style: Option<bool>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
}

/// Everything needed to talk to one bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// The key prefix of the store inside the bucket (no leading or
    /// trailing `/`; empty for the bucket root).
    pub prefix: String,
    /// Endpoint URL, if not AWS.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` when nothing says otherwise).
    pub region: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The endpoint, for messages.
    pub fn endpoint_name(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", self.region))
    }
}

impl Location {
    /// Parses `text` (a path, `file://PATH` or `s3://bucket/prefix`);
    /// `env` looks up environment variables (`std::env::var` in the
    /// binary, a map in tests).
    pub fn parse(
        text: &str,
        flags: &S3Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(RemoteError::Usage(format!(
                    "{text}: no bucket (store URLs look like s3://bucket/prefix)"
                )));
            }
            let prefix = prefix.trim_matches('/').to_string();
            if prefix.split('/').any(|p| p == "." || p == "..") {
                return Err(RemoteError::Usage(format!(
                    "{text}: a prefix may not contain . or .. segments"
                )));
            }
            let pick = |flag: &Option<String>, names: &[&str]| {
                flag.clone()
                    .or_else(|| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty())))
            };
            let endpoint = pick(
                &flags.endpoint,
                &[
                    "AWS_ENDPOINT_URL_S3",
                    "AWS_ENDPOINT_URL",
                    "AWS_ENDPOINT",
                    "HITKEEP_S3_ENDPOINT",
                ],
            );
            let path_style = match flags.path_style {
                Some(p) => p,
                None => match pick(
                    &None,
                    &["AWS_S3_FORCE_PATH_STYLE", "HITKEEP_S3_FORCE_PATH_STYLE"],
                ) {
                    Some(v) => matches!(v.as_str(), "1" | "true" | "yes"),
                    None => endpoint.is_some(),
                },
            };
            return Ok(Location::S3(S3Settings {
                bucket: bucket.to_string(),
                prefix,
                region: pick(
                    &flags.region,
                    &["AWS_REGION", "AWS_DEFAULT_REGION", "HITKEEP_S3_REGION"],
                )
                .unwrap_or_else(|| "us-east-1".into()),
                endpoint,
                path_style,
                access_key_id: pick(
                    &flags.access_key_id,
                    &["AWS_ACCESS_KEY_ID", "HITKEEP_S3_ACCESS_KEY_ID"],
                ),
                secret_access_key: pick(
                    &flags.secret_access_key,
                    &["AWS_SECRET_ACCESS_KEY", "HITKEEP_S3_SECRET_ACCESS_KEY"],
                ),
                session_token: pick(&None, &["AWS_SESSION_TOKEN", "HITKEEP_S3_SESSION_TOKEN"]),
            }));
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.is_empty() {
            return Err(RemoteError::Usage("an empty store path".into()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if scheme != "file" {
                return Err(RemoteError::Usage(format!(
                    "{text}: unsupported store URL scheme {scheme}:// (use a path, file:// or s3://)"
                )));
            }
        }
        Ok(Location::Local(PathBuf::from(path)))
    }

    /// The location as the user would write it.
    pub fn display(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::S3(s) => s.url(),
        }
    }

    /// Whether one of the two stores would lie inside the other (or they
    /// are the same): directories compared as absolute, resolved paths,
    /// buckets by endpoint, bucket and prefix.
    pub fn overlaps(&self, other: &Location) -> bool {
        match (self, other) {
            (Location::Local(a), Location::Local(b)) => {
                let (a, b) = (resolved(a), resolved(b));
                a.starts_with(&b) || b.starts_with(&a)
            }
            (Location::S3(a), Location::S3(b)) => {
                let within =
                    |x: &str, y: &str| y.is_empty() || x == y || x.starts_with(&format!("{y}/"));
                a.endpoint == b.endpoint
                    && a.bucket == b.bucket
                    && (within(&a.prefix, &b.prefix) || within(&b.prefix, &a.prefix))
            }
            _ => false,
        }
    }
}

/// `path` absolute, with the links of its longest existing part resolved
/// and the `.` and `..` of the rest taken lexically: where the path would
/// lead once created.
pub fn resolved(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(existing).is_err() {
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last.as_os_str().to_owned());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_owned());
    for part in rest.iter().rev() {
        match Component::Normal(part).as_os_str().to_str() {
            Some("..") => {
                out.pop();
            }
            Some(".") => {}
            _ => out.push(part),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn overlapping_locations_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let d = |rel: &str| Location::Local(dir.path().join(rel));
        std::fs::create_dir_all(dir.path().join("st")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("st"), dir.path().join("link")).unwrap();
        assert!(d("st").overlaps(&d("st/")));
        assert!(d("st").overlaps(&d("st/sub/deeper")));
        assert!(d("st/sub").overlaps(&d("st")));
        assert!(d("st").overlaps(&d("./st/../st")));
        assert!(d("st").overlaps(&d("link/new")));
        assert!(!d("st").overlaps(&d("st2")));
        assert!(!d("st").overlaps(&d("other/st")));
        assert!(d("st").overlaps(&d("nowhere/../st/sub")));
        assert!(!d("st").overlaps(&d("st/../restored")));
        let s3 = |url: &str| parse(url, &S3Flags::default(), &[]).unwrap();
        assert!(s3("s3://b/p").overlaps(&s3("s3://b/p/q")));
        assert!(s3("s3://b").overlaps(&s3("s3://b/p")));
        assert!(!s3("s3://b/p").overlaps(&s3("s3://b/p2")));
        assert!(!s3("s3://b/p").overlaps(&s3("s3://c/p")));
        assert!(!s3("s3://b/p").overlaps(&d("st")));
    }

    fn parse(text: &str, flags: &S3Flags, env: &[(&str, &str)]) -> Result<Location> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Location::parse(text, flags, &|k| env.get(k).cloned())
    }

    #[test]
    fn paths_and_file_urls_are_local() {
        assert_eq!(
            parse("/srv/store", &S3Flags::default(), &[]).unwrap(),
            Location::Local("/srv/store".into())
        );
        assert_eq!(
            parse("file:///srv/store", &S3Flags::default(), &[]).unwrap(),
            Location::Local("/srv/store".into())
        );
        assert!(parse("ftp://x/y", &S3Flags::default(), &[]).is_err());
        assert!(parse("s3:///p", &S3Flags::default(), &[]).is_err());
        assert!(parse("s3://b/../p", &S3Flags::default(), &[]).is_err());
    }

    #[test]
    fn flags_win_over_aws_variables_which_win_over_hitkeep_ones() {
        let env = [
            ("AWS_ACCESS_KEY_ID", "aws-key"),
            ("HITKEEP_S3_ACCESS_KEY_ID", "hk-key"),
            ("HITKEEP_S3_SECRET_ACCESS_KEY", "hk-secret"),
            ("HITKEEP_S3_ENDPOINT", "http://127.0.0.1:9000"),
        ];
        let Location::S3(s) = parse("s3://bkt/a/b/", &S3Flags::default(), &env).unwrap() else {
            panic!("not s3")
        };
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("bkt", "a/b"));
        assert_eq!(s.access_key_id.as_deref(), Some("aws-key"));
        assert_eq!(s.secret_access_key.as_deref(), Some("hk-secret"));
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.path_style, "an explicit endpoint defaults to path style");
        assert_eq!(s.region, "us-east-1");
        let flags = S3Flags {
            access_key_id: Some("flag-key".into()),
            path_style: Some(false),
            region: Some("eu-west-1".into()),
            ..S3Flags::default()
        };
        let Location::S3(s) = parse("s3://bkt", &flags, &env).unwrap() else {
            panic!("not s3")
        };
        assert_eq!(s.access_key_id.as_deref(), Some("flag-key"));
        assert!(!s.path_style);
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.url(), "s3://bkt");
        assert!(!format!("{s:?}").contains("hk-secret"));
    }
}
