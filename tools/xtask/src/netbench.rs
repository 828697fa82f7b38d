//! The network benchmark's host side: it talks to the guest's `net-bench`
//! task through QEMU's forward on 127.0.0.1 (`benches/net-bench` defines
//! the 16-byte command header), moving bulk data host → guest (sink) and
//! guest → host (source) in each IOMMU mode the driver offers, and reads
//! the driver's counters around each transfer for the syncs per packet.
//!
//! It owns the host's sockets only and never connects anywhere but the
//! loopback address it is given.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::artifacts::{self, Workspace};
use crate::qemu::{self, QemuConfig};
use crate::{hostnet, suite};

/// The benchmark's system.
pub const SYSTEM: &str = "systems/net-bench.toml";
/// The serial line after which the guest takes commands.
pub const READY: &str = r"net-bench: listening on port 80";
/// The modes measured, in order.
pub const MODES: [&str; 2] = ["bypass", "strict"];
/// Per socket operation: an emulated guest may be slow to answer.
const OP_TIMEOUT: Duration = Duration::from_secs(60);

const MAGIC: &[u8; 4] = b"NETB";
const SINK: u32 = 1;
const SOURCE: u32 = 2;
const MODE: u32 = 3;
const STATS: u32 = 4;
/// The driver's counters (net-api `NetStats`), in wire order.
const STAT_NAMES: [&str; 12] = [
    "rx_frames",
    "rx_bytes",
    "rx_dropped",
    "tx_frames",
    "tx_bytes",
    "tx_rejected",
    "irqs",
    "iommu_maps",
    "iommu_unmaps",
    "iommu_syncs",
    "refused",
    "notifications",
];

/// The driver's counters, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats(pub Vec<u64>);

impl DriverStats {
    /// The counter `name` (0 if the guest sent fewer).
    pub fn get(&self, name: &str) -> u64 {
        STAT_NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.0.get(i).copied())
            .unwrap_or(0)
    }

    /// `self - before`, counter by counter.
    pub fn since(&self, before: &DriverStats) -> DriverStats {
        DriverStats(
            self.0
                .iter()
                .zip(before.0.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.wrapping_sub(*b))
                .collect(),
        )
    }
}

/// One direction's transfer in one mode.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Transfer {
    /// "bypass" or "strict".
    pub mode: String,
    /// "host-to-guest" or "guest-to-host".
    pub direction: String,
    /// Bytes moved.
    pub bytes: u64,
    /// Seconds, measured on the host from the first byte sent to the last
    /// byte (or the guest's answer) received.
    pub seconds: f64,
    /// Megabits per second (10^6 bits).
    pub mbit_s: f64,
    /// Frames the driver moved in the transfer (both directions: data and
    /// acknowledgements).
    pub frames: u64,
    /// IOMMU syncs the driver's unmaps took.
    pub syncs: u64,
    /// `syncs / frames`.
    pub syncs_per_packet: f64,
}

fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address"));
    }
    let s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn command(s: &mut TcpStream, cmd: u32, n: u64) -> Result<(), String> {
    let mut head = [0u8; 16];
    head[..4].copy_from_slice(MAGIC);
    head[4..8].copy_from_slice(&cmd.to_le_bytes());
    head[8..].copy_from_slice(&n.to_le_bytes());
    s.write_all(&head)
        .map_err(|e| format!("sending a command: {e}"))
}

fn read_words(s: &mut TcpStream, words: usize) -> Result<Vec<u64>, String> {
    let mut b = vec![0u8; words * 8];
    s.read_exact(&mut b)
        .map_err(|e| format!("reading the guest's answer: {e}"))?;
    Ok(b.chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// The driver's counters.
pub fn driver_stats(addr: SocketAddr, timeout: Duration) -> Result<DriverStats, String> {
    let mut s = connect(addr, timeout)?;
    command(&mut s, STATS, 0)?;
    Ok(DriverStats(read_words(&mut s, STAT_NAMES.len())?))
}

/// Switches the driver to `mode` ("bypass" or "strict").
pub fn set_mode(addr: SocketAddr, mode: &str, timeout: Duration) -> Result<(), String> {
    let code = match mode {
        "bypass" => 1,
        "strict" => 2,
        _ => return Err(format!("unknown mode {mode}")),
    };
    let mut s = connect(addr, timeout)?;
    command(&mut s, MODE, code)?;
    match read_words(&mut s, 2)?[0] {
        0 => Ok(()),
        e => Err(format!("the guest could not switch to {mode}: status {e}")),
    }
}

/// Sends `bytes` to the guest; returns the seconds until it confirmed
/// every byte.
pub fn sink(addr: SocketAddr, bytes: u64, timeout: Duration) -> Result<f64, String> {
    let mut s = connect(addr, timeout)?;
    let chunk = vec![0x5au8; 64 * 1024];
    let start = Instant::now();
    command(&mut s, SINK, bytes)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])
            .map_err(|e| format!("sending to the guest: {e}"))?;
        left -= n as u64;
    }
    let answer = read_words(&mut s, 2)?;
    let seconds = start.elapsed().as_secs_f64();
    if answer[0] != bytes {
        return Err(format!("the guest received {} of {bytes} bytes", answer[0]));
    }
    Ok(seconds)
}

/// Has the guest send `bytes`; returns the seconds until the last one
/// arrived.
pub fn source(addr: SocketAddr, bytes: u64, timeout: Duration) -> Result<f64, String> {
    let mut s = connect(addr, timeout)?;
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    command(&mut s, SOURCE, bytes)?;
    let mut got = 0u64;
    while got < bytes {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("receiving from the guest: {e}"))?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    if got != bytes {
        return Err(format!("the guest sent {got} of {bytes} bytes"));
    }
    Ok(seconds)
}

/// Both directions in each of `modes`, `bytes` each way.
pub fn run(
    addr: SocketAddr,
    modes: &[&str],
    bytes: u64,
    timeout: Duration,
) -> Result<Vec<Transfer>, String> {
    let mut out = Vec::new();
    for mode in modes {
        set_mode(addr, mode, timeout)?;
        for direction in ["host-to-guest", "guest-to-host"] {
            let before = driver_stats(addr, timeout)?;
            let seconds = if direction == "host-to-guest" {
                sink(addr, bytes, timeout)?
            } else {
                source(addr, bytes, timeout)?
            };
            let d = driver_stats(addr, timeout)?.since(&before);
            let frames = d.get("rx_frames") + d.get("tx_frames");
            let syncs = d.get("iommu_syncs");
            out.push(Transfer {
                mode: (*mode).to_owned(),
                direction: direction.to_owned(),
                bytes,
                seconds,
                mbit_s: bytes as f64 * 8.0 / seconds / 1e6,
                frames,
                syncs,
                syncs_per_packet: if frames == 0 {
                    0.0
                } else {
                    syncs as f64 / frames as f64
                },
            });
        }
    }
    Ok(out)
}

/// The transfers as a Markdown table.
pub fn table(transfers: &[Transfer]) -> String {
    let mut t = String::from(
        "| mode | direction | MiB | s | Mbit/s | frames | IOMMU syncs | syncs/packet |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for x in transfers {
        t.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.1} | {} | {} | {:.3} |\n",
            x.mode,
            x.direction,
            x.bytes >> 20,
            x.seconds,
            x.mbit_s,
            x.frames,
            x.syncs,
            x.syncs_per_packet
        ));
    }
    t
}

/// The scenario's check (`host = "net-bench"`): `mib` MiB each way in
/// bypass and in strict; every byte arrives, strict pays syncs and bypass
/// none. Returns the table's lines.
pub fn check(addr: SocketAddr, mib: u64) -> Result<Vec<String>, String> {
    let t = run(addr, &MODES, mib << 20, OP_TIMEOUT)?;
    for x in &t {
        let strict = x.mode == "strict";
        if strict && x.syncs == 0 {
            return Err(format!("strict {}: no IOMMU syncs", x.direction));
        }
        if !strict && x.syncs != 0 {
            return Err(format!("bypass {}: {} IOMMU syncs", x.direction, x.syncs));
        }
    }
    Ok(table(&t).lines().map(str::to_owned).collect())
}

/// `cargo xtask bench --net`: boots the benchmark system `repeat` times,
/// moves `mib` MiB each way in each mode per boot, and writes
/// `net.json` and `net.md` to `out`.
pub fn bench(out: Option<PathBuf>, mib: u64, repeat: u64) -> Result<ExitCode, String> {
    let ws = Workspace::locate()?;
    crate::prereq::ensure_all(&ws)?;
    let system = suite::load_system(&ws, Path::new(SYSTEM))?;
    let images = artifacts::build(&ws, None, &system.packages())?;
    let ready = regex::Regex::new(READY).map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    for rep in 1..=repeat {
        println!("xtask: net bench boot {rep}/{repeat}: {mib} MiB each way in {MODES:?}");
        let scratch = ws.scratch_dir("bench-net");
        let mut cfg = QemuConfig::new(&images.kernel, &scratch);
        qemu::prepare_scratch(&scratch, &cfg)?;
        let image = scratch.join("boot.img");
        let len = artifacts::write_boot_image(&system, &images, &image)?;
        cfg.check_boot_image_fits(len)?;
        cfg.boot_image = Some(image);
        cfg.user_net = true;
        let port = hostnet::free_loopback_port()?;
        cfg.host_forward = Some(port);
        let log = scratch.join("serial.log");
        let got: Arc<Mutex<Vec<Transfer>>> = Arc::default();
        let sink = Arc::clone(&got);
        let timeout = Duration::from_secs(120 + 4 * mib);
        let (_, result) = qemu::run_with_host(
            &cfg,
            &log,
            timeout,
            false,
            ready.clone(),
            |_| {},
            move || {
                let t = run(hostnet::loopback(port), &MODES, mib << 20, OP_TIMEOUT)?;
                let lines = table(&t).lines().map(str::to_owned).collect();
                sink.lock().map_err(|e| e.to_string())?.extend(t);
                Ok(lines)
            },
        )?;
        match result {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("net bench: {e}; serial log {}", log.display())),
            None => {
                return Err(format!(
                    "net bench: the guest never said `{READY}`; serial log {}",
                    log.display()
                ));
            }
        }
        let t = std::mem::take(&mut *got.lock().map_err(|e| e.to_string())?);
        print!("{}", table(&t));
        all.extend(t);
    }
    let out = out.unwrap_or_else(|| ws.target_dir.join("bench").join("net"));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let json = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
    std::fs::write(out.join("net.json"), json + "\n").map_err(|e| e.to_string())?;
    let md = format!(
        "TCP bulk transfer through QEMU's user-networking forward on 127.0.0.1, \
         {mib} MiB each way per mode, {repeat} boot(s); host-measured seconds.\n\n{}",
        table(&all)
    );
    std::fs::write(out.join("net.md"), md).map_err(|e| e.to_string())?;
    println!("xtask: net bench written to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A guest stand-in speaking net-bench's protocol.
    fn fake_guest(l: TcpListener, conns: usize) {
        for _ in 0..conns {
            let (mut s, _) = l.accept().unwrap();
            let mut head = [0u8; 16];
            s.read_exact(&mut head).unwrap();
            assert_eq!(&head[..4], MAGIC);
            let cmd = u32::from_le_bytes(head[4..8].try_into().unwrap());
            let n = u64::from_le_bytes(head[8..].try_into().unwrap());
            match cmd {
                SINK => {
                    let mut left = n;
                    let mut buf = [0u8; 4096];
                    while left > 0 {
                        let k = s.read(&mut buf).unwrap();
                        left -= k as u64;
                    }
                    s.write_all(&n.to_le_bytes()).unwrap();
                    s.write_all(&7u64.to_le_bytes()).unwrap();
                }
                SOURCE => s.write_all(&vec![1u8; n as usize]).unwrap(),
                MODE => s.write_all(&[0u8; 16]).unwrap(),
                STATS => {
                    for i in 0..STAT_NAMES.len() as u64 {
                        s.write_all(&(i * 10).to_le_bytes()).unwrap();
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn talks_to_a_guest_and_computes_rates() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // Per mode: mode, then (stats, transfer, stats) twice.
        let guest = std::thread::spawn(move || fake_guest(l, 7));
        let t = run(addr, &["strict"], 100_000, Duration::from_secs(10)).unwrap();
        guest.join().unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|x| x.mbit_s > 0.0 && x.bytes == 100_000));
        // The fake's counters do not move: no frames, no syncs.
        assert_eq!(t[0].frames, 0);
        assert!(table(&t).contains("| strict | host-to-guest |"));
    }

    #[test]
    fn refuses_anything_but_loopback() {
        let e = driver_stats("10.0.2.15:80".parse().unwrap(), Duration::from_secs(1));
        assert!(e.unwrap_err().contains("not a loopback"));
    }

    #[test]
    fn counters_subtract() {
        let a = DriverStats(vec![5, 9, 0, 3, 0, 0, 0, 0, 0, 4]);
        let b = DriverStats(vec![1, 2]);
        let d = a.since(&b);
        assert_eq!(d.get("rx_frames"), 4);
        assert_eq!(d.get("rx_bytes"), 7);
        assert_eq!(d.get("iommu_syncs"), 4);
        assert_eq!(d.get("nonsense"), 0);
    }
}
