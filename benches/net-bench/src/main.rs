//! The network benchmark's guest side. It listens on one TCP port (the
//! host reaches it through QEMU's forward) and serves one command per
//! connection, each a 16-byte header `{magic "NETB", cmd: u32, n: u64}`
//! (little-endian):
//!
//! - cmd 1, *sink*: read `n` bytes and answer 16 bytes `{received: u64,
//!   guest_us: u64}` (host to guest);
//! - cmd 2, *source*: send `n` bytes (guest to host);
//! - cmd 3, *mode*: switch the network driver's IOMMU policy (`n` = 1
//!   bypass, 2 strict) and answer `{status: u64 (0 ok, else a NetError
//!   code), 0: u64}`;
//! - cmd 4, *stats*: answer the driver's counters (`NetStats`, 8 bytes
//!   each), so the host can compute syncs per packet.
//!
//! Anything else closes the connection. It owns its socket and its
//! buffer, nothing else; it never panics on what a peer sends.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use net_api::{NetMode, NetStats};
use sock_client::{ClientError, Tcp};
use userlib::ipc::Call;
use userlib::log;

userlib::entry!(main);

const MAGIC: &[u8; 4] = b"NETB";
const HEADER: usize = 16;

fn main(info: &userlib::TaskInfo<'static>) -> i32 {
    let Some(sock) = info.cap("sock") else {
        log!("net-bench: needs capability `sock`");
        return 2;
    };
    let net = info.cap("net");
    let port = match userlib::arg_u64(info, "port", 5001) {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        _ => {
            log!("net-bench: `port` must be 1..=65535");
            return 2;
        }
    };
    let mut tcp = match Tcp::new(sock, sock_api::MAX_TRANSFER) {
        Ok(t) => t,
        Err(e) => {
            log!("net-bench: {e}");
            return 1;
        }
    };
    let listener = match tcp.listen(port, 1) {
        Ok(l) => l,
        Err(e) => {
            log!("net-bench: cannot listen on port {port}: {e}");
            return 1;
        }
    };
    log!("net-bench: listening on port {port}");
    loop {
        let conn = match tcp.accept(listener) {
            Ok(c) => c,
            Err(e) => {
                log!("net-bench: accept failed: {e}");
                return 1;
            }
        };
        if let Err(e) = serve(&mut tcp, conn, net) {
            log!("net-bench: connection ended: {e}");
        }
        let _ = tcp.close(conn);
    }
}

/// Reads exactly `out.len()` bytes; false if the peer closed first.
fn read_exact(tcp: &mut Tcp, s: sock_api::Socket, out: &mut [u8]) -> Result<bool, ClientError> {
    let mut got = 0;
    while got < out.len() {
        let n = tcp.recv(s, &mut out[got..])?;
        if n == 0 {
            return Ok(false);
        }
        got += n;
    }
    Ok(true)
}

fn serve(tcp: &mut Tcp, s: sock_api::Socket, net: Option<u32>) -> Result<(), ClientError> {
    let mut head = [0u8; HEADER];
    if !read_exact(tcp, s, &mut head)? || &head[..4] != MAGIC {
        return Ok(());
    }
    let cmd = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut n = [0u8; 8];
    n.copy_from_slice(&head[8..16]);
    let n = u64::from_le_bytes(n);
    let clock = userlib::Counter::from_kernel();
    match cmd {
        1 => {
            let start = userlib::counter();
            let mut left = n;
            while left > 0 {
                let got = tcp.discard(s, left.min(u64::from(u32::MAX)) as usize)?;
                if got == 0 {
                    break;
                }
                left = left.saturating_sub(got as u64);
            }
            let us = clock.micros(userlib::counter().wrapping_sub(start));
            let mut out = [0u8; 16];
            out[..8].copy_from_slice(&(n - left).to_le_bytes());
            out[8..].copy_from_slice(&us.to_le_bytes());
            tcp.send_all(s, &out)
        }
        2 => {
            let mut left = n;
            while left > 0 {
                let sent = tcp.send_buffer(s, left.min(u64::from(u32::MAX)) as usize)?;
                left = left.saturating_sub(sent as u64);
            }
            Ok(())
        }
        3 => {
            let status = match (net, n) {
                (Some(cap), 1 | 2) => {
                    let mode = if n == 1 {
                        NetMode::Bypass
                    } else {
                        NetMode::Strict
                    };
                    let c = net_api::Client(Call::<DriverError>::new(cap, None, None));
                    match c.set_mode(&mut [0; net_api::MSG_MAX], mode) {
                        Ok(()) => 0,
                        Err(DriverError::Net(e)) => u64::from(e.code()),
                        Err(DriverError::Sys(e)) => {
                            log!("net-bench: the driver refused the call: {e}");
                            u64::MAX
                        }
                    }
                }
                _ => u64::MAX,
            };
            let mut out = [0u8; 16];
            out[..8].copy_from_slice(&status.to_le_bytes());
            tcp.send_all(s, &out)
        }
        4 => {
            let stats = match net {
                Some(cap) => net_api::Client(Call::<DriverError>::new(cap, None, None))
                    .stats(&mut [0; net_api::MSG_MAX])
                    .unwrap_or_default(),
                None => NetStats::default(),
            };
            let mut out = [0u8; NetStats::FIELDS * 8];
            for (i, v) in stats.to_array().iter().enumerate() {
                out[i * 8..][..8].copy_from_slice(&v.to_le_bytes());
            }
            tcp.send_all(s, &out)
        }
        _ => Ok(()),
    }
}

/// What a driver call can fail with.
enum DriverError {
    Sys(abi::Error),
    Net(net_api::NetError),
}

impl From<abi::Error> for DriverError {
    fn from(e: abi::Error) -> Self {
        DriverError::Sys(e)
    }
}

impl From<net_api::NetError> for DriverError {
    fn from(e: net_api::NetError) -> Self {
        DriverError::Net(e)
    }
}
