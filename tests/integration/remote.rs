//! Off-host stores: the object backends against a real S3 server on
//! loopback, and the `cairn` commands that read and replicate stores.

use cairn_remote::{Backend, Location, ObjectInfo, RemoteError, RetryPolicy, S3Flags};

use crate::s3_server::{S3Server, ACCESS_KEY, SECRET_KEY};

fn backend(url: &str, flags: &S3Flags) -> std::sync::Arc<dyn Backend> {
    let loc = Location::parse(url, flags, &|_| None).expect("location");
    cairn_remote::open(&loc, &quick_retry()).expect("open backend")
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        initial_backoff: std::time::Duration::from_millis(50),
        max_backoff: std::time::Duration::from_millis(200),
        timeout: std::time::Duration::from_secs(5),
    }
}

fn flags(server: &S3Server, secret: &str) -> S3Flags {
    S3Flags {
        endpoint: Some(server.endpoint.clone()),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(secret.into()),
        ..S3Flags::default()
    }
}

#[test]
fn s3_backend_puts_gets_ranges_lists_and_deletes() {
    let server = S3Server::shared();
    let b = backend(&server.url("backend"), &flags(server, SECRET_KEY));
    assert!(b.list("packs").unwrap().is_empty());
    b.put("packs/ab.pack", b"hello world".to_vec()).unwrap();
    assert!(!b.put_new("packs/ab.pack", b"other".to_vec()).unwrap());
    assert!(b.put_new("snapshots/x", b"m".to_vec()).unwrap());
    assert_eq!(b.get("packs/ab.pack").unwrap(), b"hello world");
    assert_eq!(b.get_range("packs/ab.pack", 6..11).unwrap(), b"world");
    assert_eq!(b.size("packs/ab.pack").unwrap(), Some(11));
    assert_eq!(b.size("packs/none").unwrap(), None);
    assert_eq!(
        b.list("packs").unwrap(),
        vec![ObjectInfo {
            name: "ab.pack".into(),
            size: 11
        }]
    );
    let missing = b.get("snapshots/y").unwrap_err();
    assert!(matches!(missing, RemoteError::NotFound { .. }), "{missing}");
    assert!(missing.to_string().contains("snapshots/y"), "{missing}");
    b.delete("packs/ab.pack").unwrap();
    b.delete("packs/ab.pack").unwrap();
    assert!(b.list("packs").unwrap().is_empty());
}

#[test]
fn s3_backend_names_bad_credentials_missing_bucket_and_server_down() {
    let server = S3Server::shared();
    let wrong = backend(&server.url("creds"), &flags(server, "not-the-secret"));
    let e = wrong.list("packs").unwrap_err();
    assert!(matches!(e, RemoteError::Denied { .. }), "{e:?}");
    let e = wrong.put("x", b"x".to_vec()).unwrap_err();
    assert!(matches!(e, RemoteError::Denied { .. }), "{e:?}");

    let nobucket = backend("s3://no-such-bucket/p", &flags(server, SECRET_KEY));
    let e = nobucket.list("packs").unwrap_err();
    assert!(matches!(e, RemoteError::NoBucket { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-bucket"), "{e}");
    let e = nobucket.put("config", b"x".to_vec()).unwrap_err();
    assert!(matches!(e, RemoteError::NoBucket { .. }), "{e:?}");

    let down = S3Flags {
        endpoint: Some(format!(
            "http://127.0.0.1:{}",
            crate::s3_server::free_port()
        )),
        ..flags(server, SECRET_KEY)
    };
    let e = backend("s3://cairn-test/p", &down)
        .list("packs")
        .unwrap_err();
    assert!(matches!(e, RemoteError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
}
