//! The dashboard task: a small HTTP/1.1 server on TCP port `port`
//! (default 80) through the network stack (`sock-client`), one connection
//! at a time: read the request into a bounded buffer with a deadline,
//! answer (`GET /` the page, `GET /stats.json` the figures, anything else
//! refused: `dashboard_core`), close. Its figures come from the IOMMU
//! server's `Overview` request, which only a monitor may make: the task
//! holds a call capability `iommu` on the server with trust `monitor` in
//! the system description, and a call capability `sock` on the stack.
//!
//! It holds no device, maps nothing for DMA and changes nothing in the
//! IOMMU server (a monitor's requests are read-only). It must never panic
//! on anything a peer sends: all parsing is `dashboard_core`'s, bounded
//! and host-tested; a socket error only ends that connection.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use dashboard_core::conn::{Conn, Outcome, serve_one};
use dashboard_core::{Snapshot, Status};
use iommu_api::{ClientSummary, MAX_OVERVIEW_CLIENTS, ServerTotals};
use iommu_client::Iommu;
use sock_api::{SockError, Socket, Wait};
use sock_client::{ClientError, Tcp};
use userlib::time::Counter;
use userlib::{TaskInfo, log};

userlib::entry!(main);

/// Most clients the page shows (pages of the `Overview` request).
const MAX_CLIENTS: usize = 64;
/// Connections between two summary lines in the log.
const LOG_EVERY: u64 = 100;

fn main(info: &TaskInfo<'static>) -> i32 {
    match run(info) {
        Ok(()) => 0,
        Err(e) => {
            log!("dashboard: FAILED: {e}");
            1
        }
    }
}

/// A connected socket of the stack.
struct SockConn<'t> {
    tcp: &'t mut Tcp,
    socket: Socket,
}

impl Conn for SockConn<'_> {
    type Error = ClientError;
    fn recv(&mut self, buf: &mut [u8], wait_ms: u64) -> Result<usize, ClientError> {
        let wait = Wait(u32::try_from(wait_ms).unwrap_or(u32::MAX).max(1));
        self.tcp.recv_within(self.socket, buf, wait)
    }
    fn timed_out(e: &ClientError) -> bool {
        *e == ClientError::Sock(SockError::TimedOut)
    }
    fn send(&mut self, bytes: &[u8]) -> Result<usize, ClientError> {
        self.tcp.send(self.socket, bytes)
    }
}

/// How the connections ended, for the log.
#[derive(Default)]
struct Tally {
    connections: u64,
    ok: u64,
    refused: u64,
    closed_early: u64,
    socket_errors: u64,
}

fn arg(info: &TaskInfo<'static>, name: &str, default: u64, max: u64) -> Result<u64, &'static str> {
    match userlib::arg_u64(info, name, default) {
        Ok(v) if (1..=max).contains(&v) => Ok(v),
        _ => Err("bad argument (port 1..=65535, deadline_ms 1..=60000)"),
    }
}

fn run(info: &TaskInfo<'static>) -> Result<(), &'static str> {
    let iommu = Iommu::new(
        info.cap("iommu")
            .ok_or("needs capability `iommu` (a monitor's)")?,
    );
    let sock = info.cap("sock").ok_or("needs capability `sock`")?;
    let port = arg(info, "port", 80, 65_535)? as u16;
    let deadline_ms = arg(info, "deadline_ms", 2_000, 60_000)?;
    let ip = info.arg("ip").unwrap_or("10.0.2.15");
    let clock = Counter::from_kernel();
    let now_ms = || clock.micros(userlib::counter()) / 1000;
    let start = now_ms();

    // The IOMMU server must take us as a monitor before we listen.
    let mut summaries = Vec::new();
    summaries
        .try_reserve_exact(MAX_CLIENTS)
        .map_err(|_| "out of memory")?;
    match overview(&iommu, &mut summaries) {
        Ok(totals) => log!(
            "dashboard: monitor of the IOMMU server: {} clients, {} syncs so far",
            totals.clients,
            totals.syncs
        ),
        Err(e) => {
            log!("dashboard: the IOMMU server refused Overview: {e}");
            return Err("not a monitor of the IOMMU server");
        }
    }

    let mut tcp = Tcp::new(sock, 4096).map_err(|_| "no transfer buffer")?;
    let listener = tcp.listen(port, 4).map_err(|e| {
        log!("dashboard: cannot listen on port {port}: {e}");
        "listen refused"
    })?;
    log!("dashboard: listening on {ip}:{port}");

    let mut t = Tally::default();
    loop {
        let socket = match tcp.accept(listener) {
            Ok(s) => s,
            Err(e) => {
                log!("dashboard: accept refused: {e}");
                // The stack may be restarting: do not spin.
                let _ = userlib::sleep(100_000);
                continue;
            }
        };
        let served = t.ok;
        let deadline = now_ms().saturating_add(deadline_ms);
        let outcome = serve_one(
            &mut SockConn {
                tcp: &mut tcp,
                socket,
            },
            now_ms,
            deadline,
            || {
                overview(&iommu, &mut summaries)
                    .ok()
                    .map(|totals| Snapshot {
                        totals,
                        clients: summaries.clone(),
                        uptime_ms: now_ms().saturating_sub(start),
                        served,
                    })
            },
        );
        let _ = tcp.close(socket);
        t.connections += 1;
        match outcome {
            Outcome::Answered(Status::Ok) => t.ok += 1,
            Outcome::Answered(_) => t.refused += 1,
            Outcome::PeerClosed => t.closed_early += 1,
            Outcome::SocketError => t.socket_errors += 1,
        }
        if t.connections <= 2 || t.connections % LOG_EVERY == 0 {
            log!(
                "dashboard: {} connections: {} answered 200, {} refused, {} closed early, {} socket errors",
                t.connections,
                t.ok,
                t.refused,
                t.closed_early,
                t.socket_errors
            );
        }
    }
}

/// Every client's summary (into `out`, at most [`MAX_CLIENTS`]) and the
/// server's totals, page by page.
fn overview(
    iommu: &Iommu,
    out: &mut Vec<ClientSummary>,
) -> Result<ServerTotals, iommu_client::ClientError> {
    out.clear();
    let mut page = [ClientSummary::empty(); MAX_OVERVIEW_CLIENTS];
    let mut first = 0u32;
    loop {
        let (totals, n) = iommu.overview(first, &mut page)?;
        let room = MAX_CLIENTS.saturating_sub(out.len());
        out.extend(page.iter().take(n.min(room)).copied());
        first = first.saturating_add(n as u32);
        if n == 0 || u64::from(first) >= totals.clients || out.len() >= MAX_CLIENTS {
            return Ok(totals);
        }
    }
}
