//! The host's side of the guest's network: choosing a free loopback port
//! for QEMU's forward to the guest's dashboard ([`free_loopback_port`],
//! [`hostfwd`]), and the checks the host runs against a live guest while
//! it runs ([`HostCheck`]: `net-dashboard` fetches the pages and watches
//! the figures rise, `net-bad-input` throws bad input at it and then
//! fetches normally).
//!
//! Every address it touches is 127.0.0.1: the forward is bound to loopback
//! only (never 0.0.0.0), and no check connects anywhere else. Every socket
//! operation has a timeout; it never hangs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The guest's dashboard port (inside QEMU's user network).
pub const GUEST_PORT: u16 = 80;
/// The line the dashboard task prints once it listens: the host checks
/// start when the serial console shows it.
pub const READY_LINE: &str = "dashboard: listening on 10.0.2.15:80";
/// Timeout of one connect, read or write (the guest is emulated, and may
/// be busy with its block client).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of an answer the host reads.
const MAX_ANSWER: usize = 1 << 20;

/// A loopback port no one listens on now (the OS picks it; a race with
/// another program taking it before QEMU is possible but harmless: QEMU
/// then fails to start and says so).
pub fn free_loopback_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read the chosen port: {e}"))
}

/// QEMU's `-netdev user` option forwarding `127.0.0.1:host_port` to the
/// guest's port [`GUEST_PORT`]: bound to loopback only.
pub fn hostfwd(host_port: u16) -> String {
    format!("hostfwd=tcp:127.0.0.1:{host_port}-:{GUEST_PORT}")
}

/// The URL the dashboard is reached at.
pub fn url(host_port: u16) -> String {
    format!("http://127.0.0.1:{host_port}/")
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// An HTTP answer: status code, head and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body (lossy UTF-8).
    pub body: String,
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    Ok(s)
}

/// Sends `request` as is and reads the answer until the server closes.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Answer, String> {
    let mut s = connect(addr)?;
    // A server may answer and close before taking an oversized request
    // whole: a failed send is judged by the answer that came.
    let sent = s.write_all(request);
    read_answer(&mut s).map_err(|e| match sent {
        Ok(()) => e,
        Err(w) => format!("{e} (send: {w})"),
    })
}

fn read_answer(s: &mut TcpStream) -> Result<Answer, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() > MAX_ANSWER {
                    return Err("answer over 1 MiB".into());
                }
            }
            // A reset after a complete answer is a close.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !got.is_empty() => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "no answer within {} s (after {} bytes)",
                    IO_TIMEOUT.as_secs(),
                    got.len()
                ));
            }
            Err(e) => return Err(format!("read: {e} after {} bytes", got.len())),
        }
        if start.elapsed() > 3 * IO_TIMEOUT {
            return Err("answer did not end".into());
        }
    }
    parse_answer(&got)
}

/// Splits an HTTP/1.1 answer into status and body, checking
/// `Content-Length` when it is given.
pub fn parse_answer(got: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(got);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        format!(
            "no end of head in {} bytes: {:?}",
            got.len(),
            preview(&text)
        )
    })?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    if let Some(len) = head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
    }) && len != body.len()
    {
        return Err(format!(
            "Content-Length {len} but {} body bytes",
            body.len()
        ));
    }
    Ok(Answer {
        status,
        body: body.to_owned(),
    })
}

fn preview(s: &str) -> String {
    s.chars().take(120).collect()
}

/// `GET path` with a normal head.
pub fn get(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: xtask\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    exchange(addr, req.as_bytes())
}

/// `GET /stats.json`, parsed.
pub fn stats(addr: SocketAddr) -> Result<Value, String> {
    let a = get(addr, "/stats.json")?;
    if a.status != 200 {
        return Err(format!("/stats.json: status {}", a.status));
    }
    serde_json::from_str(&a.body).map_err(|e| format!("/stats.json does not parse: {e}"))
}

/// The client entry of the JSON whose name contains `name`.
pub fn client<'a>(stats: &'a Value, name: &str) -> Option<&'a Value> {
    stats["clients"]
        .as_array()?
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains(name)))
}

fn counter(c: &Value, key: &str) -> Result<u64, String> {
    c[key]
        .as_u64()
        .ok_or_else(|| format!("client {} has no counter {key}", c["name"]))
}

/// The checks a scenario runs from the host while its guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCheck {
    /// `net-dashboard`: `/` and `/stats.json` answer; the network driver
    /// is a strict, untrusted client whose maps, unmaps and syncs rise
    /// between two fetches.
    Dashboard,
    /// `net-bad-input`: malformed HTTP, oversized heads, 1,000
    /// connections opened and dropped, random bytes; then a normal fetch
    /// still works.
    BadInput,
    /// `net-throughput`: bulk TCP each way in bypass and in strict through
    /// `net-bench` (see `netbench`); strict pays IOMMU syncs, bypass none.
    NetBench,
}

impl HostCheck {
    /// The check a scenario's `host` key names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "dashboard" => Some(Self::Dashboard),
            "bad-input" => Some(Self::BadInput),
            "net-bench" => Some(Self::NetBench),
            _ => None,
        }
    }

    /// Runs the check against the dashboard at `addr`; `driver` is a part
    /// of the network driver's task name. Returns what it saw, or what is
    /// wrong.
    pub fn run(self, addr: SocketAddr, driver: &str) -> Result<Vec<String>, String> {
        match self {
            Self::Dashboard => check_dashboard(addr, driver),
            Self::BadInput => check_bad_input(addr, driver),
            Self::NetBench => crate::netbench::check(addr, NET_CHECK_MIB),
        }
    }
}

/// MiB each way per mode in `net-throughput`.
const NET_CHECK_MIB: u64 = 2;

/// How long the figures get to rise between two fetches.
const RISE_WINDOW: Duration = Duration::from_secs(30);

fn check_dashboard(addr: SocketAddr, driver: &str) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let page = get(addr, "/")?;
    if page.status != 200 {
        return Err(format!("GET /: status {}", page.status));
    }
    for needle in ["http-equiv=\"refresh\"", "<table", driver] {
        if !page.body.contains(needle) {
            return Err(format!("GET /: no {needle:?} in the page"));
        }
    }
    notes.push(format!("GET / 200, {} bytes", page.body.len()));
    let first = stats(addr)?;
    let c1 = client(&first, driver)
        .ok_or_else(|| format!("/stats.json: no client named like {driver:?}: {first}"))?;
    if c1["trust"] != "untrusted" || c1["policy"] != "strict" || c1["strict"] != true {
        return Err(format!(
            "the network driver is not a strict untrusted client: {c1}"
        ));
    }
    if first["clients"].as_array().map_or(0, Vec::len) < 2 {
        return Err(format!("fewer than two clients: {first}"));
    }
    let keys = ["maps", "unmaps", "syncs"];
    let before: Vec<u64> = keys
        .iter()
        .map(|k| counter(c1, k))
        .collect::<Result<_, _>>()?;
    notes.push(format!(
        "first fetch: {driver} maps/unmaps/syncs {before:?}"
    ));
    let deadline = Instant::now() + RISE_WINDOW;
    loop {
        // Each fetch is traffic through the driver: its TX buffers are
        // mapped and strictly unmapped.
        let now = stats(addr)?;
        let c2 = client(&now, driver).ok_or("the network driver went from the JSON")?;
        let after: Vec<u64> = keys
            .iter()
            .map(|k| counter(c2, k))
            .collect::<Result<_, _>>()?;
        if before.iter().zip(&after).all(|(b, a)| a > b) {
            notes.push(format!("later fetch: {driver} maps/unmaps/syncs {after:?}"));
            return Ok(notes);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "maps/unmaps/syncs of {driver} did not all rise in {} s: {before:?} -> {after:?}",
                RISE_WINDOW.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A small deterministic generator (xorshift64*), so a failing run can be
/// repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A pause longer than the dashboard's read deadline (`deadline_ms` in
/// systems/net.toml, 2 s).
const SLOW_PAUSE: Duration = Duration::from_secs(3);

/// A head sent in two parts with a pause past the dashboard's deadline
/// between them, still incomplete after the second: 408.
fn slow_head(addr: SocketAddr) -> Result<String, String> {
    let what = "a head still incomplete past the deadline";
    let mut s = connect(addr)?;
    s.write_all(b"GET / HTTP/1.1\r\n")
        .map_err(|e| format!("{what}: {e}"))?;
    std::thread::sleep(SLOW_PAUSE);
    s.write_all(b"Host: x\r\n")
        .map_err(|e| format!("{what}: {e}"))?;
    let a = read_answer(&mut s).map_err(|e| format!("{what}: {e}"))?;
    if a.status != 408 {
        return Err(format!("{what}: status {}, expected 408", a.status));
    }
    Ok(format!("{what}: 408"))
}

/// A peer that connects and sends nothing holds the (one-at-a-time)
/// dashboard only until its deadline: it gets 408, and a fetch queued
/// behind it is answered.
fn silent_peer(addr: SocketAddr) -> Result<String, String> {
    let what = "a silent peer";
    let mut idle = connect(addr)?;
    // Let the guest accept it before the fetch queues behind it.
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let a = get(addr, "/").map_err(|e| format!("a fetch behind {what}: {e}"))?;
    let waited = start.elapsed().as_secs_f64();
    if a.status != 200 {
        return Err(format!("a fetch behind {what}: status {}", a.status));
    }
    let b = read_answer(&mut idle).map_err(|e| format!("{what}: {e}"))?;
    if b.status != 408 {
        return Err(format!("{what}: status {}, expected 408", b.status));
    }
    Ok(format!(
        "{what}: 408 at the deadline; a fetch behind it answered after {waited:.1} s"
    ))
}

/// Connections opened and dropped by `net-bad-input`.
pub const DROPPED_CONNECTIONS: usize = 1000;
/// Pause after each dropped connection (see `check_bad_input`).
const DROP_PACING: Duration = Duration::from_millis(10);

fn expect_status(addr: SocketAddr, what: &str, req: &[u8], want: u16) -> Result<String, String> {
    let a = exchange(addr, req).map_err(|e| format!("{what}: {e}"))?;
    if a.status != want {
        return Err(format!("{what}: status {}, expected {want}", a.status));
    }
    Ok(format!("{what}: {want}"))
}

fn check_bad_input(addr: SocketAddr, driver: &str) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let malformed: [(&str, &[u8]); 6] = [
        ("no version", b"GET /\r\n\r\n"),
        ("bad version", b"GET / HTTP/7.1\r\n\r\n"),
        ("bare LF", b"GET / HTTP/1.1\nHost: x\n\n"),
        ("header without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n"),
        ("NUL in head", b"GET / HTTP/1.1\r\nA: \x00\r\n\r\n"),
        ("a body", b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
    ];
    for (what, req) in malformed {
        notes.push(expect_status(addr, what, req, 400)?);
    }
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.resize(big.len() + 8 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    notes.push(expect_status(addr, "8 KiB header", &big, 400)?);
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    notes.push(expect_status(addr, "200 headers", &many, 400)?);
    notes.push(expect_status(
        addr,
        "unknown path",
        b"GET /nope HTTP/1.1\r\n\r\n",
        404,
    )?);
    notes.push(slow_head(addr)?);
    notes.push(silent_peer(addr)?);

    // Opened and dropped at once: the dashboard sees the peer close. QEMU's
    // slirp listens for the forward with a backlog of one and accepts from
    // its main loop: back to back, about one connect in five found the
    // queue full and waited for the host's 1 s SYN retry (1,000 took
    // 293 s); DROP_PACING between them keeps every connect immediate.
    let start = Instant::now();
    for i in 0..DROPPED_CONNECTIONS {
        let s =
            connect(addr).map_err(|e| format!("connection {i} of {DROPPED_CONNECTIONS}: {e}"))?;
        drop(s);
        std::thread::sleep(DROP_PACING);
    }
    notes.push(format!(
        "{DROPPED_CONNECTIONS} connections opened and dropped in {:.1} s",
        start.elapsed().as_secs_f64()
    ));

    // Random bytes: whatever the answer, one must come or the connection
    // close; nothing may hang.
    let mut rng = Rng(0x005e_ed0f_da5b_0a2d);
    for round in 0..20 {
        let len = 1 + (rng.next() % 3000) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut s = connect(addr)?;
        // The guest may close before taking it all: a send error is fine.
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        match s.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => return Err(format!("random bytes round {round} ({len} bytes): {e}")),
        }
    }
    notes.push("20 rounds of random bytes answered or closed".into());

    // And it still works.
    let a = get(addr, "/")?;
    if a.status != 200 || !a.body.contains(driver) {
        return Err(format!("GET / after the bad input: status {}", a.status));
    }
    let s = stats(addr)?;
    client(&s, driver).ok_or("the network driver is gone from /stats.json")?;
    notes.push("a normal fetch still works".into());
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// A stand-in dashboard on a plain std listener: answers `/` and
    /// `/stats.json` (its counters rising per request), 404 for other
    /// paths and 400 for anything else, like the guest's.
    fn fake_dashboard(conns: usize) -> (u16, thread::JoinHandle<()>) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let h = thread::spawn(move || {
            let mut n = 0u64;
            for s in l.incoming().take(conns) {
                let Ok(mut s) = s else { continue };
                // Like the guest: 2 s from the accept for the whole head,
                // a silent peer included.
                let since = Instant::now();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let req = loop {
                    let left = Duration::from_secs(2).saturating_sub(since.elapsed());
                    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                        .unwrap();
                    match s.read(&mut chunk) {
                        Ok(0) => break None,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            break Some(Err(true));
                        }
                        Err(_) => break None,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                    let complete = buf.windows(4).any(|w| w == b"\r\n\r\n");
                    if !complete && since.elapsed() > Duration::from_secs(2) {
                        break Some(Err(true));
                    }
                    let bare_lf = buf
                        .iter()
                        .enumerate()
                        .any(|(i, &c)| c == b'\n' && (i == 0 || buf[i - 1] != b'\r'));
                    if buf.len() > 2048 || bare_lf {
                        break Some(Err(false));
                    }
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(Ok(buf[..end].to_vec()));
                    }
                };
                let Some(req) = req else { continue };
                // Headers: `name: value`, no control bytes, no body.
                let req = req.and_then(|head| {
                    let text = String::from_utf8(head.clone()).map_err(|_| false)?;
                    let ok = text.lines().skip(1).count() <= 32
                        && text.lines().skip(1).all(|l| {
                            l.contains(':')
                                && !l.bytes().any(|c| c < 0x20 && c != b'\r')
                                && !l.to_ascii_lowercase().starts_with("content-length")
                        });
                    if ok { Ok(head) } else { Err(false) }
                });
                n += 1;
                let (status, body) = match req {
                    Ok(head) if head.starts_with(b"GET / HTTP/1.1\r\n") => (
                        "200 OK",
                        "<meta http-equiv=\"refresh\"><table>virtio-net".to_owned(),
                    ),
                    Ok(head) if head.starts_with(b"GET /stats.json HTTP/1.1\r\n") => (
                        "200 OK",
                        format!(
                            "{{\"clients\":[{{\"name\":\"virtio-net\",\"trust\":\"untrusted\",\
                             \"policy\":\"strict\",\"strict\":true,\"maps\":{n},\"unmaps\":{n},\
                             \"syncs\":{n}}},{{\"name\":\"nvme\"}}]}}"
                        ),
                    ),
                    Ok(head) if head.starts_with(b"GET /nope ") => ("404 Not Found", String::new()),
                    Err(true) => ("408 Request Timeout", String::new()),
                    _ => ("400 Bad Request", String::new()),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes());
                // Close gracefully, as the guest's stack does: a close with
                // unread bytes would reset the connection and drop the
                // answer.
                let _ = s.shutdown(std::net::Shutdown::Write);
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                while matches!(s.read(&mut chunk), Ok(k) if k > 0) {}
            }
        });
        (port, h)
    }

    #[test]
    fn forward_is_loopback_only() {
        let port = free_loopback_port().unwrap();
        assert_ne!(port, 0);
        assert_eq!(hostfwd(8080), "hostfwd=tcp:127.0.0.1:8080-:80");
        assert_eq!(url(8080), "http://127.0.0.1:8080/");
        assert!(loopback(1).ip().is_loopback());
    }

    #[test]
    fn answers_parse_and_lengths_are_checked() {
        let a = parse_answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno").unwrap();
        assert_eq!((a.status, a.body.as_str()), (404, "no"));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nno").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn the_dashboard_check_passes_against_a_stand_in() {
        let (port, h) = fake_dashboard(3);
        let notes = HostCheck::Dashboard
            .run(loopback(port), "virtio-net")
            .unwrap();
        assert!(notes.iter().any(|n| n.contains("later fetch")), "{notes:?}");
        h.join().unwrap();
    }

    #[test]
    fn the_dashboard_check_fails_without_the_driver() {
        let (port, _h) = fake_dashboard(2);
        let e = HostCheck::Dashboard
            .run(loopback(port), "no-such-driver")
            .unwrap_err();
        assert!(e.contains("no-such-driver"), "{e}");
    }

    #[test]
    fn the_bad_input_check_passes_against_a_stand_in() {
        // 10 refusals, a silent peer and the fetch behind it, the dropped
        // connections, 20 random rounds, 2 fetches.
        let (port, h) = fake_dashboard(10 + 2 + DROPPED_CONNECTIONS + 20 + 2);
        let notes = HostCheck::BadInput
            .run(loopback(port), "virtio-net")
            .unwrap();
        assert!(notes.last().unwrap().contains("still works"), "{notes:?}");
        h.join().unwrap();
    }

    #[test]
    fn nothing_listening_fails_fast() {
        let port = free_loopback_port().unwrap();
        let start = Instant::now();
        assert!(HostCheck::Dashboard.run(loopback(port), "x").is_err());
        assert!(start.elapsed() < IO_TIMEOUT);
    }
}
