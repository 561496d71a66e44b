//! The dispatcher run by hand (no systemd): `--listen PATH` binds the socket
//! itself, the secret comes from the environment with a warning, and the
//! audit records go to stderr when there is no journal to take them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Dispatcher {
    child: Child,
    dir: PathBuf,
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything the dispatcher wrote on stderr, once it has exited.
fn stderr_of(d: &mut Dispatcher) -> String {
    let mut err = String::new();
    d.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

fn start(name: &str, secret: Option<&str>) -> (Dispatcher, PathBuf) {
    let dir = std::env::temp_dir().join(format!("lh-byhand-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("s.sock");
    let config = dir.join("config.toml");
    // root is always allowed; anyone else running the test is allowed by name
    let me = std::env::var("USER").unwrap_or_else(|_| "root".into());
    std::fs::write(
        &config,
        format!("allowed_groups = []\nallowed_users = [{me:?}]\n"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_luminous-healing"));
    cmd.args([
        "--listen",
        sock.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ])
    .args(["--state-file", dir.join("state.log").to_str().unwrap()])
    .env_remove("CREDENTIALS_DIRECTORY")
    .env_remove("LISTEN_FDS")
    .env_remove("NOTIFY_SOCKET")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    match secret {
        Some(s) => cmd.env("LUMINOUS_HEALING_SECRET", s),
        None => cmd.env_remove("LUMINOUS_HEALING_SECRET"),
    };
    let child = cmd.spawn().unwrap();
    (Dispatcher { child, dir }, sock)
}

fn wait_for_socket(p: &Path) {
    let t0 = Instant::now();
    while !p.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ask(sock: &Path, body: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(sock).unwrap();
    s.write_all(body.as_bytes()).unwrap(); // no newline, no shutdown: the v1 client's way
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).unwrap();
    serde_json::from_slice(&buf[..n]).unwrap()
}

fn signed_status(key: &str, id: &str) -> String {
    let ts = chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    let sig = healing_auth::sign(key.as_bytes(), &format!("{id}:status:{ts}"));
    format!(
        r#"{{"id": "{id}", "action": "status", "parameters": {{}}, "timestamp": "{ts}", "signature": "{sig}"}}"#
    )
}

#[test]
fn binds_the_given_path_and_serves_with_the_environment_secret() {
    let (mut d, sock) = start("ok", Some("by-hand-key"));
    wait_for_socket(&sock);
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let r = ask(&sock, &signed_status("by-hand-key", "hand-1"));
    assert_eq!(r["success"], true, "{r}");
    let r = ask(&sock, &signed_status("wrong-key", "hand-2"));
    assert_eq!(r["error"], "Invalid signature");
    let r = ask(&sock, &signed_status("by-hand-key", "hand-1"));
    assert_eq!(r["error"], "Replayed request id");
    // The wrong-key refusal came before authentication: its record is folded
    // and written once its second is over.
    std::thread::sleep(Duration::from_millis(1500));
    d.child.kill().unwrap();
    let err = stderr_of(&mut d);
    // no journal socket is guaranteed here: whatever took the records, the
    // warning about the environment secret is part of the contract
    if !Path::new("/run/systemd/journal/socket").exists() {
        assert!(err.contains("LUMINOUS_HEALING_SECRET"), "{err}");
        assert!(err.contains("\"HEALING_OUTCOME\":\"denied\""), "{err}");
        assert!(err.contains("\"HEALING_REQUEST_ID\":\"hand-2\""), "{err}");
    }
}

#[test]
fn refuses_to_start_without_a_secret() {
    let (mut d, _sock) = start("nosecret", None);
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(78), "EX_CONFIG");
    let err = stderr_of(&mut d);
    assert!(err.contains("no secret"), "{err}");
}
