//! A store location in S3-compatible object storage, through the
//! `object_store` crate. Its async calls run on a small tokio runtime of
//! the bucket's own, so callers (rayon workers included) stay blocking.
//! Transient failures are retried by `object_store` with exponential
//! backoff as [`RetryPolicy`] says; what is left is mapped to a
//! [`RemoteError`] that names the bucket, object or endpoint.

use std::ops::Range;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

use crate::backend::{Backend, ObjectInfo, RetryPolicy};
use crate::error::{RemoteError, Result};
use crate::location::S3Settings;

/// One bucket and prefix.
#[derive(Debug)]
pub struct S3Bucket {
    settings: S3Settings,
    retry: RetryPolicy,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

impl S3Bucket {
    /// A client for `settings` (no request is made yet).
    pub fn connect(settings: &S3Settings, retry: &RetryPolicy) -> Result<Self> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: retry.initial_backoff,
                    max_backoff: retry.max_backoff,
                    base: 2.0,
                },
                max_retries: retry.max_retries,
                retry_timeout: retry.timeout,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(std::time::Duration::from_secs(10))
                    .with_timeout(std::time::Duration::from_secs(300)),
            );
        if let Some(e) = &settings.endpoint {
            b = b.with_endpoint(e);
        }
        match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(k), Some(s)) => b = b.with_access_key_id(k).with_secret_access_key(s),
            (None, None) => {}
            _ => {
                return Err(RemoteError::Usage(format!(
                    "{}: an access key id needs its secret access key and the other way round",
                    settings.url()
                )))
            }
        }
        if let Some(t) = &settings.session_token {
            b = b.with_token(t);
        }
        let store = b
            .build()
            .map_err(|e| RemoteError::Usage(format!("{}: {}", settings.url(), error_chain(&e))))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Usage(format!("cannot start the S3 client: {e}")))?;
        Ok(Self {
            settings: settings.clone(),
            retry: retry.clone(),
            store: Arc::new(store),
            runtime,
        })
    }

    /// Runs one request. `object_store` retries what it knows is safe to
    /// repeat (connection not made, 5xx); a connection dropped after the
    /// request was sent it retries only for reads. Every request cairn
    /// makes is safe to repeat (objects are content-addressed or written
    /// whole; a create-only PUT that may have landed is settled by the
    /// caller reading back), so such drops are retried here too, with the
    /// same backoff and count.
    fn call<T, Fut>(&self, op: impl Fn() -> Fut) -> object_store::Result<T>
    where
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let mut backoff = self.retry.initial_backoff;
        let mut retries = 0;
        loop {
            match self.runtime.block_on(op()) {
                Err(e) if retries < self.retry.max_retries && dropped_connection(&e) => {
                    retries += 1;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.retry.max_backoff);
                }
                r => return r,
            }
        }
    }

    fn key(&self, name: &str) -> ObjectPath {
        if self.settings.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.settings.prefix))
        }
    }

    /// Turns an `object_store` error into one that says what to do.
    fn map(&self, name: &str, e: object_store::Error) -> RemoteError {
        let location = self.object_location(name);
        let text = error_chain(&e);
        let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
        if has(&["NoSuchBucket", "bucket does not exist"]) {
            return RemoteError::NoBucket {
                bucket: self.settings.bucket.clone(),
                endpoint: self.settings.endpoint_name(),
            };
        }
        match e {
            object_store::Error::NotFound { .. } => RemoteError::NotFound { location },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => RemoteError::Denied {
                location: self.settings.url(),
                detail: short(&text),
            },
            _ if has(&[
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "403 Forbidden",
            ]) =>
            {
                RemoteError::Denied {
                    location: self.settings.url(),
                    detail: short(&text),
                }
            }
            _ if has(&[
                "Connection refused",
                "error sending request",
                "dns error",
                "connection closed",
                "tcp connect",
                "timed out",
            ]) =>
            {
                RemoteError::Unreachable {
                    endpoint: self.settings.endpoint_name(),
                    detail: short(&text),
                }
            }
            _ => RemoteError::Request {
                location,
                detail: short(&text),
            },
        }
    }
}

/// A connection closed or reset under a request that was sent.
fn dropped_connection(e: &object_store::Error) -> bool {
    let text = error_chain(e).to_ascii_lowercase();
    [
        "connection reset",
        "connection closed",
        "broken pipe",
        "incompletemessage",
        "unexpected eof",
    ]
    .iter()
    .any(|n| text.contains(n))
}

/// An error with its causes, `: `-joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = c.source();
    }
    text
}

/// The first line of a server's words, not too long.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut s: String = line.chars().take(300).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    s
}

impl Backend for S3Bucket {
    fn location(&self) -> String {
        self.settings.url()
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let key = self.key(name);
        self.call(|| async {
            let r = self.store.get(&key).await?;
            r.bytes().await
        })
        .map(|b| b.to_vec())
        .map_err(|e| self.map(name, e))
    }

    fn get_range(&self, name: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let key = self.key(name);
        let want = range.end - range.start;
        let bytes = self
            .call(|| self.store.get_range(&key, range.clone()))
            .map_err(|e| self.map(name, e))?;
        if bytes.len() as u64 != want {
            return Err(RemoteError::Request {
                location: self.object_location(name),
                detail: format!("asked for {want} bytes, got {}", bytes.len()),
            });
        }
        Ok(bytes.to_vec())
    }

    fn size(&self, name: &str) -> Result<Option<u64>> {
        let key = self.key(name);
        match self.call(|| self.store.head(&key)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.map(name, e)),
        }
    }

    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let key = self.key(name);
        let payload = PutPayload::from(bytes);
        self.call(|| self.store.put(&key, payload.clone()))
            .map(|_| ())
            .map_err(|e| self.map(name, e))
    }

    fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool> {
        let key = self.key(name);
        let payload = PutPayload::from(bytes);
        let put = || {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            self.store.put_opts(&key, payload.clone(), opts)
        };
        match self.call(put) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.map(name, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let prefix = self.key(dir);
        let base = format!("{}/", prefix.as_ref());
        let metas: Vec<object_store::ObjectMeta> = self
            .call(|| self.store.list(Some(&prefix)).try_collect())
            .map_err(|e| self.map(dir, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.as_ref().strip_prefix(&base)?.to_string();
                Some(ObjectInfo { name, size: m.size })
            })
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name);
        match self.call(|| self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map(name, e)),
        }
    }
}
