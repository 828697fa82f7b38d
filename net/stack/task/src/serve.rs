//! The stack's loop and its side of the socket protocol: one [`Handler`]
//! method per `sock-api` request, reached through
//! [`sock_api::Request::dispatch`]. Owns the interface, the smoltcp
//! socket set and the clock. It must never answer a call it holds twice,
//! and never wait on anything but `recv` (the driver's calls answer at
//! once).

use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use sock_api::{Handler, Response, SockError, Socket, Wait};
use userlib::ipc::{FOREVER, MSG_MAX, RecvKind};
use userlib::{Counter, log};

use crate::link::Link;
use netstack_core::{Replier, Sockets};

/// Egress passes per round, at most (each sends up to one segment per
/// socket).
const MAX_EGRESS_PASSES: usize = 64;

/// Longest wait between polls while something is pending.
const MAX_WAIT_US: u64 = 50_000;

/// Answers through the kernel.
struct Kernel;

impl Replier for Kernel {
    fn reply(&mut self, token: u64, r: Result<Response<'_>, SockError>) {
        let mut out = [0u8; MSG_MAX];
        let n = Response::encode_result(r, &mut out);
        // A caller that died meanwhile makes this fail; its death notice
        // follows and the table drops what it held.
        let _ = userlib::reply(token, &out[..n]);
    }

    fn read_grant(&mut self, token: u64, buf: &mut [u8]) -> bool {
        userlib::grant_read(token, 0, buf).is_ok_and(|n| n == buf.len())
    }

    fn write_grant(&mut self, token: u64, data: &[u8]) -> bool {
        userlib::grant_write(token, 0, data).is_ok_and(|n| n == data.len())
    }
}

/// An IPv4 address argument (`a.b.c.d`), or `default`.
fn ipv4_arg(info: &userlib::TaskInfo<'_>, key: &str, default: [u8; 4]) -> Option<Ipv4Address> {
    let Some(text) = info.arg(key) else {
        let [a, b, c, d] = default;
        return Some(Ipv4Address::new(a, b, c, d));
    };
    let mut out = [0u8; 4];
    let mut parts = text.trim().split('.');
    for o in &mut out {
        *o = parts.next()?.parse().ok()?;
    }
    parts
        .next()
        .is_none()
        .then(|| Ipv4Address::new(out[0], out[1], out[2], out[3]))
}

struct Stack {
    iface: Interface,
    set: SocketSet<'static>,
    link: Link,
    sockets: Sockets,
    clock: Counter,
}

impl Stack {
    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.micros(userlib::counter()) as i64)
    }

    /// Fetches frames, polls, answers what can be answered and sends,
    /// until nothing more happens at once.
    fn pump(&mut self) {
        for _ in 0..64 {
            let fetched = match self.link.fill() {
                Ok(f) => f,
                Err(e) => {
                    log!("netstack: receive from the driver failed: {e}");
                    false
                }
            };
            let now = self.now();
            let mut progressed = self.iface.poll(now, &mut self.link, &mut self.set)
                == PollResult::SocketStateChanged;
            self.sockets.service(&mut self.set, &mut Kernel, now);
            // smoltcp sends at most one segment per socket per egress pass:
            // pass again until it has nothing more or the batch is full, so
            // one `Send` carries the batch (answering a held call may have
            // queued data too).
            for _ in 0..MAX_EGRESS_PASSES {
                if !self.link.tx_room()
                    || self
                        .iface
                        .poll_egress(self.now(), &mut self.link, &mut self.set)
                        == PollResult::None
                {
                    break;
                }
                progressed = true;
            }
            if let Err(e) = self.link.flush() {
                log!("netstack: send to the driver failed: {e}");
            }
            if !fetched && !progressed {
                break;
            }
        }
        self.sockets.stats.rx_frames = self.link.rx_frames;
        self.sockets.stats.tx_frames = self.link.tx_frames;
        self.sockets.stats.tx_deferred = self.link.tx_deferred;
    }

    /// Microseconds until smoltcp needs polling again, or a held `Recv`
    /// times out.
    fn timeout_us(&mut self) -> u64 {
        let now = self.now();
        let poll = self.iface.poll_delay(now, &self.set);
        let recv = self
            .sockets
            .next_deadline()
            .map(|d| if d > now { d - now } else { Duration::ZERO });
        let delay = match (poll, recv) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|d| d.total_micros());
        match (delay, self.sockets.busy()) {
            (Some(d), _) => d.min(MAX_WAIT_US),
            (None, true) => MAX_WAIT_US,
            (None, false) => FOREVER,
        }
    }
}

/// One socket call being handled.
struct Call<'s> {
    stack: &'s mut Stack,
    badge: u32,
    token: u64,
    grant_len: u64,
}

impl Call<'_> {
    fn answer(self, r: Result<Response<'_>, SockError>) {
        if r.is_err() {
            self.stack.sockets.stats.refused += 1;
        }
        Kernel.reply(self.token, r);
    }

    /// Holds the call if `r` is Ok (the table answers it later).
    fn hold(self, r: Result<(), SockError>) {
        if let Err(e) = r {
            self.answer(Err(e));
        }
    }
}

impl<'a> Handler<'a> for Call<'_> {
    type Out = ();

    fn listen(self, port: u16, backlog: u16) {
        let s = &mut *self.stack;
        let r = s.sockets.listen(&mut s.set, self.badge, port, backlog);
        self.answer(r.map(Response::Listening));
    }

    fn accept(self, listener: Socket) {
        let r = self.stack.sockets.accept(self.badge, listener, self.token);
        self.hold(r);
    }

    fn send(self, socket: Socket, len: u32) {
        let r = self
            .stack
            .sockets
            .send(self.badge, socket, len, self.grant_len, self.token);
        self.hold(r);
    }

    fn recv(self, socket: Socket, max: u32, wait: Wait) {
        let deadline = (wait != Wait::FOREVER)
            .then(|| self.stack.now() + Duration::from_millis(wait.0.into()));
        let r = self.stack.sockets.recv(
            self.badge,
            socket,
            max,
            self.grant_len,
            self.token,
            deadline,
        );
        self.hold(r);
    }

    fn close(self, socket: Socket) {
        let now = self.stack.now();
        let s = &mut *self.stack;
        let r = s
            .sockets
            .close(&mut s.set, &mut Kernel, self.badge, socket, now);
        self.answer(r.map(|()| Response::Closed));
    }

    fn stats(self) {
        let stats = self.stack.sockets.stats;
        self.answer(Ok(Response::Stats(stats)));
    }
}

/// Sets the stack up from the task's arguments and serves until the
/// driver goes away.
pub fn run(info: &userlib::TaskInfo<'static>) -> i32 {
    let (Some(endpoint), Some(net)) = (info.cap("sock"), info.cap("net")) else {
        log!("netstack: needs capabilities `sock` (served) and `net` (the driver)");
        return 2;
    };
    let (Some(ip), Some(gateway)) = (
        ipv4_arg(info, "ip", [10, 0, 2, 15]),
        ipv4_arg(info, "gateway", [10, 0, 2, 2]),
    ) else {
        log!("netstack: `ip` and `gateway` must be dotted IPv4 addresses");
        return 2;
    };
    let prefix = match userlib::arg_u64(info, "prefix", 24) {
        Ok(p) if p <= 32 => p as u8,
        _ => {
            log!("netstack: `prefix` must be 0..=32");
            return 2;
        }
    };
    let (mut link, nic) = match Link::open(net) {
        Ok(l) => l,
        Err(e) => {
            log!("netstack: cannot reach the network driver: {e}");
            return 1;
        }
    };
    let Some(sockets) = Sockets::new() else {
        log!("netstack: out of memory for the socket table");
        return 1;
    };
    let clock = Counter::from_kernel();
    let now = Instant::from_micros(clock.micros(userlib::counter()) as i64);
    let mac = EthernetAddress(nic.mac);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ethernet(mac)), &mut link, now);
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(ip.into(), prefix));
    });
    if iface.routes_mut().add_default_ipv4_route(gateway).is_err() {
        log!("netstack: cannot add the default route");
        return 1;
    }
    let mut stack = Stack {
        iface,
        set: SocketSet::new(alloc::vec::Vec::new()),
        link,
        sockets,
        clock,
    };
    log!(
        "netstack: {ip}/{prefix} via {gateway}, MAC {mac}, MTU {}, link {}",
        nic.mtu,
        if nic.link_up { "up" } else { "down" }
    );
    let mut buf = [0u8; MSG_MAX];
    loop {
        stack.pump();
        let timeout = stack.timeout_us();
        let got = match userlib::recv(endpoint, &mut buf, &mut [], timeout) {
            Ok(g) => g,
            Err(e) => {
                log!("netstack: recv refused: {e}");
                continue;
            }
        };
        match userlib::ipc::kind(&got) {
            Some(RecvKind::Call) => {
                let msg = &buf[..(got.len as usize).min(MSG_MAX)];
                let call = Call {
                    stack: &mut stack,
                    badge: got.badge,
                    token: got.reply,
                    grant_len: got.grant_len,
                };
                match sock_api::Request::decode(msg) {
                    Ok(req) => req.dispatch(call),
                    Err(e) => call.answer(Err(e)),
                }
            }
            Some(RecvKind::Notification) => stack.link.notified(),
            Some(RecvKind::ClientDied) => {
                let now = stack.now();
                let s = &mut stack;
                s.sockets
                    .client_died(&mut s.set, &mut Kernel, got.badge, now);
                let _ = userlib::reply(got.reply, &[]);
            }
            Some(RecvKind::Timeout) | None => {}
        }
    }
}
