//! `load-tungstenite` against the servers with a handshake by hand (`echo-fastws-raw`,
//! `echo-ceiling`) and against `echo-wsx`: the `--json` report that `scripts/bench.sh` reads
//! counts echoes and no error.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// A server binary started on 127.0.0.1, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &str) -> Server {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after `"key":` in a flat JSON object.
fn field(json: &str, key: &str) -> f64 {
    let start = json.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().unwrap()
}

fn load(url: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_load-tungstenite"))
        .arg(url)
        .args([
            "--conns",
            "3",
            "--duration",
            "0.4",
            "--warmup",
            "0.1",
            "--json",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn check(bin: &str) {
    let server = Server::start(bin);
    for extra in [&["--size", "1024"][..], &["--pipeline", "4", "--text"][..]] {
        let json = load(&server.url, extra);
        assert!(field(&json, "messages") > 0.0, "{bin} {extra:?}: {json}");
        assert!(field(&json, "messages_per_sec") > 0.0, "{json}");
        assert_eq!(field(&json, "errors"), 0.0, "{bin} {extra:?}: {json}");
        assert!(field(&json, "p99") >= field(&json, "p50"), "{json}");
        assert!(json.contains("\"latency_us\":{\"p50\":"), "{json}");
    }
}

#[test]
fn load_tungstenite_against_echo_fastws_raw() {
    check(env!("CARGO_BIN_EXE_echo-fastws-raw"));
}

#[test]
fn load_tungstenite_against_echo_ceiling() {
    check(env!("CARGO_BIN_EXE_echo-ceiling"));
}

#[test]
fn load_tungstenite_against_echo_wsx() {
    check(env!("CARGO_BIN_EXE_echo-wsx"));
}

#[test]
fn a_request_that_is_not_an_upgrade_gets_400() {
    use std::io::{Read as _, Write as _};
    let server = Server::start(env!("CARGO_BIN_EXE_echo-fastws-raw"));
    let addr = server.url.strip_prefix("ws://").unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
}
