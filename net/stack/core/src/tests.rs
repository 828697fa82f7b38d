//! The socket table against real smoltcp: one interface on a loopback
//! device, a peer socket (not in the table) on the same interface, and a
//! fake kernel recording every answer and standing in for the callers'
//! grants.

use std::collections::HashMap;

use proptest::prelude::*;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

use super::*;

/// A response, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    Accepted(Socket),
    Received(u32),
    Sent(u32),
    Other,
}

#[derive(Default)]
struct FakeKernel {
    answers: Vec<(u64, Result<Got, SockError>)>,
    grants: HashMap<u64, Vec<u8>>,
}

impl FakeKernel {
    fn answer(&self, token: u64) -> Option<&Result<Got, SockError>> {
        self.answers
            .iter()
            .find(|(t, _)| *t == token)
            .map(|(_, r)| r)
    }
}

impl Replier for FakeKernel {
    fn reply(&mut self, token: u64, r: Result<Response<'_>, SockError>) {
        assert!(self.answer(token).is_none(), "token {token} answered twice");
        let got = r.map(|r| match r {
            Response::Accepted(s) => Got::Accepted(s),
            Response::Received(n) => Got::Received(n),
            Response::Sent(n) => Got::Sent(n),
            _ => Got::Other,
        });
        self.answers.push((token, got));
    }
    fn read_grant(&mut self, token: u64, buf: &mut [u8]) -> bool {
        match self.grants.get(&token) {
            Some(g) if g.len() >= buf.len() => {
                buf.copy_from_slice(&g[..buf.len()]);
                true
            }
            _ => false,
        }
    }
    fn write_grant(&mut self, token: u64, data: &[u8]) -> bool {
        match self.grants.get_mut(&token) {
            Some(g) if g.len() >= data.len() => {
                g[..data.len()].copy_from_slice(data);
                true
            }
            _ => false,
        }
    }
}

struct World {
    iface: Interface,
    dev: Loopback,
    set: SocketSet<'static>,
    table: Sockets,
    kernel: FakeKernel,
    now: Instant,
}

impl World {
    fn new() -> World {
        let mut dev = Loopback::new(Medium::Ethernet);
        let cfg = Config::new(EthernetAddress([2, 0, 0, 0, 0, 1]).into());
        let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap();
        });
        World {
            iface,
            dev,
            set: SocketSet::new(Vec::new()),
            table: Sockets::new().unwrap(),
            kernel: FakeKernel::default(),
            now: Instant::ZERO,
        }
    }

    /// Polls and services a few rounds, the clock moving 1 ms each.
    fn run(&mut self) {
        for _ in 0..20 {
            self.now += Duration::from_millis(1);
            self.iface.poll(self.now, &mut self.dev, &mut self.set);
            self.table
                .service(&mut self.set, &mut self.kernel, self.now);
        }
    }

    /// A peer socket connecting to `port`.
    fn connect(&mut self, port: u16, local: u16) -> SocketHandle {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        );
        let h = self.set.add(s);
        let cx = self.iface.context();
        self.set
            .get_mut::<tcp::Socket>(h)
            .connect(cx, (IpAddress::v4(127, 0, 0, 1), port), local)
            .unwrap();
        h
    }

    fn peer(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.set.get_mut::<tcp::Socket>(h)
    }

    fn accepted(&mut self, owner: u32, listener: Socket, token: u64) -> Socket {
        self.table.accept(owner, listener, token).unwrap();
        self.run();
        match self.kernel.answer(token) {
            Some(Ok(Got::Accepted(s))) => *s,
            other => panic!("accept answered {other:?}"),
        }
    }
}

#[test]
fn a_connection_is_accepted_and_moves_bytes_both_ways() {
    let mut w = World::new();
    let l = w.table.listen(&mut w.set, 1, 80, 2).unwrap();
    let peer = w.connect(80, 49152);
    let s = w.accepted(1, l, 10);

    w.peer(peer).send_slice(b"hello").unwrap();
    w.kernel.grants.insert(11, vec![0; 100]);
    w.table.recv(1, s, 100, 100, 11, None).unwrap();
    w.run();
    assert_eq!(w.kernel.answer(11), Some(&Ok(Got::Received(5))));
    assert_eq!(&w.kernel.grants[&11][..5], b"hello");

    w.kernel.grants.insert(12, b"world".to_vec());
    w.table.send(1, s, 5, 5, 12).unwrap();
    w.run();
    assert_eq!(w.kernel.answer(12), Some(&Ok(Got::Sent(5))));
    let mut buf = [0u8; 16];
    let n = w.peer(peer).recv_slice(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"world");

    // Closing shuts the connection down: the peer sees the end.
    w.table
        .close(&mut w.set, &mut w.kernel, 1, s, w.now)
        .unwrap();
    w.run();
    assert!(!w.peer(peer).may_recv());
    assert_eq!(w.table.stats.accepted, 1);
    assert_eq!(w.table.stats.tcp_rx_bytes, 5);
    assert_eq!(w.table.stats.tcp_tx_bytes, 5);
}

#[test]
fn a_peer_closing_answers_a_waiting_recv_with_zero() {
    let mut w = World::new();
    let l = w.table.listen(&mut w.set, 1, 80, 1).unwrap();
    let peer = w.connect(80, 49152);
    let s = w.accepted(1, l, 10);
    w.kernel.grants.insert(11, vec![0; 10]);
    w.table.recv(1, s, 10, 10, 11, None).unwrap();
    w.run();
    assert_eq!(w.kernel.answer(11), None, "nothing to receive yet: held");
    w.peer(peer).close();
    w.run();
    assert_eq!(w.kernel.answer(11), Some(&Ok(Got::Received(0))));
}

#[test]
fn a_recv_with_a_deadline_times_out_and_the_connection_still_works() {
    let mut w = World::new();
    let l = w.table.listen(&mut w.set, 1, 80, 1).unwrap();
    let peer = w.connect(80, 49152);
    let s = w.accepted(1, l, 10);
    w.kernel.grants.insert(11, vec![0; 10]);
    let deadline = w.now + Duration::from_millis(5);
    w.table.recv(1, s, 10, 10, 11, Some(deadline)).unwrap();
    assert_eq!(w.table.next_deadline(), Some(deadline));
    w.run();
    assert_eq!(w.kernel.answer(11), Some(&Err(SockError::TimedOut)));
    assert_eq!(w.table.next_deadline(), None);
    // The connection is unchanged: data sent afterwards arrives.
    w.peer(peer).send_slice(b"late").unwrap();
    w.kernel.grants.insert(12, vec![0; 10]);
    w.table.recv(1, s, 10, 10, 12, None).unwrap();
    w.run();
    assert_eq!(w.kernel.answer(12), Some(&Ok(Got::Received(4))));
}

#[test]
fn other_clients_handles_and_bad_requests_are_refused() {
    let mut w = World::new();
    let l = w.table.listen(&mut w.set, 1, 80, 1).unwrap();
    assert_eq!(
        w.table.listen(&mut w.set, 2, 80, 1),
        Err(SockError::PortInUse)
    );
    // Another client, a connection call on a listener, a stale handle.
    assert_eq!(w.table.accept(2, l, 1), Err(SockError::BadSocket));
    assert_eq!(
        w.table.recv(1, l, 10, 10, 1, None),
        Err(SockError::BadSocket)
    );
    assert_eq!(
        w.table.accept(1, Socket(l.0 + (1 << 8)), 1),
        Err(SockError::BadSocket)
    );
    assert_eq!(w.table.accept(1, Socket(999), 1), Err(SockError::BadSocket));
    let peer = w.connect(80, 49152);
    let s = w.accepted(1, l, 10);
    let _ = peer;
    // A grant shorter than asked, a second waiter.
    assert_eq!(
        w.table.recv(1, s, 100, 99, 2, None),
        Err(SockError::NotGranted)
    );
    assert_eq!(w.table.send(1, s, 100, 0, 2), Err(SockError::NotGranted));
    w.table.recv(1, s, 10, 10, 3, None).unwrap();
    assert_eq!(w.table.recv(1, s, 10, 10, 4, None), Err(SockError::Busy));
    // Closing answers the held call.
    w.table
        .close(&mut w.set, &mut w.kernel, 1, s, w.now)
        .unwrap();
    assert_eq!(w.kernel.answer(3), Some(&Err(SockError::NotConnected)));
    assert_eq!(
        w.table.close(&mut w.set, &mut w.kernel, 1, s, w.now),
        Err(SockError::BadSocket),
        "a closed handle is gone"
    );
}

#[test]
fn limits_hold_and_a_dead_client_frees_everything() {
    let mut w = World::new();
    let mut held = Vec::new();
    for port in 1..=PER_CLIENT as u16 {
        held.push(w.table.listen(&mut w.set, 1, port, 1).unwrap());
    }
    assert_eq!(
        w.table.listen(&mut w.set, 1, 1000, 1),
        Err(SockError::Limit),
        "per-client limit"
    );
    // The smoltcp socket budget is shared: others run out too.
    let mut n = 0;
    while w.table.listen(&mut w.set, 2, 2000 + n, 1).is_ok() {
        n += 1;
    }
    assert_eq!(PER_CLIENT + usize::from(n), TCP_SOCKETS);
    w.table.accept(1, held[0], 77).unwrap();
    w.table.client_died(&mut w.set, &mut w.kernel, 1, w.now);
    assert_eq!(w.kernel.answer(77), None, "a dead client's call is dropped");
    w.run();
    for port in 1..=PER_CLIENT as u16 {
        w.table.listen(&mut w.set, 3, port, 1).unwrap();
    }
    assert_eq!(w.table.stats.sockets, (PER_CLIENT + usize::from(n)) as u64);
}

#[derive(Clone, Debug)]
enum Op {
    Listen(u32, u16, u16),
    Accept(u32, u8),
    Recv(u32, u8, u32, u64),
    Send(u32, u8, u32, u64),
    Close(u32, u8),
    Died(u32),
    Connect(u16),
    PeerSend(u8),
    PeerClose(u8),
    Run,
}

fn op() -> impl Strategy<Value = Op> {
    let owner = 1u32..4;
    let slot = any::<u8>();
    prop_oneof![
        (owner.clone(), 1u16..6, 1u16..=sock_api::MAX_BACKLOG)
            .prop_map(|(o, p, b)| Op::Listen(o, p, b)),
        (owner.clone(), slot).prop_map(|(o, s)| Op::Accept(o, s)),
        (owner.clone(), slot, 1u32..3000, 0u64..3000).prop_map(|(o, s, m, g)| Op::Recv(o, s, m, g)),
        (owner.clone(), slot, 1u32..3000, 0u64..3000).prop_map(|(o, s, m, g)| Op::Send(o, s, m, g)),
        (owner.clone(), slot).prop_map(|(o, s)| Op::Close(o, s)),
        owner.prop_map(Op::Died),
        (1u16..6).prop_map(Op::Connect),
        slot.prop_map(Op::PeerSend),
        slot.prop_map(Op::PeerClose),
        Just(Op::Run),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever clients and peers do, the table never panics, answers no
    /// call twice (the fake kernel checks), and stays within its limits.
    #[test]
    fn any_sequence_keeps_the_limits(ops in proptest::collection::vec(op(), 1..80)) {
        let mut w = World::new();
        let mut handles: Vec<Socket> = Vec::new();
        let mut peers: Vec<SocketHandle> = Vec::new();
        let mut token = 100u64;
        let mut local = 40000u16;
        for op in ops {
            token += 1;
            let pick = |s: u8| handles.get(usize::from(s) % handles.len().max(1)).copied().unwrap_or(Socket(u32::from(s)));
            match op {
                Op::Listen(o, p, b) => {
                    if let Ok(s) = w.table.listen(&mut w.set, o, p, b) { handles.push(s); }
                }
                Op::Accept(o, s) => { let _ = w.table.accept(o, pick(s), token); }
                Op::Recv(o, s, m, g) => {
                    w.kernel.grants.insert(token, vec![0; g as usize]);
                    let deadline = (m % 2 == 0).then(|| w.now + Duration::from_millis(5));
                    let _ = w.table.recv(o, pick(s), m, g, token, deadline);
                }
                Op::Send(o, s, m, g) => {
                    w.kernel.grants.insert(token, vec![7; g as usize]);
                    let _ = w.table.send(o, pick(s), m, g, token);
                }
                Op::Close(o, s) => { let now = w.now; let _ = w.table.close(&mut w.set, &mut w.kernel, o, pick(s), now); }
                Op::Died(o) => { let now = w.now; w.table.client_died(&mut w.set, &mut w.kernel, o, now); }
                Op::Connect(p) => { local += 1; peers.push(w.connect(p, local)); }
                Op::PeerSend(i) => if let Some(&h) = peers.get(usize::from(i) % peers.len().max(1)) {
                    let _ = w.peer(h).send_slice(b"data");
                },
                Op::PeerClose(i) => if let Some(&h) = peers.get(usize::from(i) % peers.len().max(1)) {
                    w.peer(h).close();
                },
                Op::Run => w.run(),
            }
            for (_, r) in &w.kernel.answers {
                if let Ok(Got::Accepted(s)) = r && !handles.contains(s) {
                    handles.push(*s);
                }
            }
            prop_assert!(w.table.tcp_in_use <= TCP_SOCKETS);
            let live: Vec<&Entry> = w.table.entries.iter().flatten().collect();
            prop_assert!(live.len() <= MAX_HANDLES);
            prop_assert_eq!(live.len() as u64, w.table.stats.sockets);
            for o in 1..4 {
                prop_assert!(live.iter().filter(|e| e.owner == o).count() <= PER_CLIENT);
            }
        }
    }
}

/// A NIC that delivers whatever frames a test gives it and swallows what
/// the stack sends: hostile input with checksums not verified, so that
/// every parser layer sees it.
struct Hostile {
    frames: std::collections::VecDeque<Vec<u8>>,
    sent: usize,
}

struct HostileRx(Vec<u8>);
struct HostileTx<'a>(&'a mut usize);

impl smoltcp::phy::RxToken for HostileRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for HostileTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        *self.0 += 1;
        let mut buf = vec![0u8; len];
        f(&mut buf)
    }
}

impl smoltcp::phy::Device for Hostile {
    type RxToken<'a> = HostileRx;
    type TxToken<'a> = HostileTx<'a>;
    fn receive(&mut self, _: Instant) -> Option<(HostileRx, HostileTx<'_>)> {
        let f = self.frames.pop_front()?;
        Some((HostileRx(f), HostileTx(&mut self.sent)))
    }
    fn transmit(&mut self, _: Instant) -> Option<HostileTx<'_>> {
        Some(HostileTx(&mut self.sent))
    }
    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut c = smoltcp::phy::DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c.checksum = smoltcp::phy::ChecksumCapabilities::ignored();
        c
    }
}

const OUR_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

/// A frame: random bytes, or headers that get past each layer in turn
/// (Ethernet to us, IPv4 to 10.0.2.15, TCP to port 80) with the rest
/// random.
fn hostile_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..4,
        proptest::collection::vec(any::<u8>(), 0..1600),
        any::<u8>(),
        any::<u16>(),
    )
        .prop_map(|(layer, mut rest, flags, sport)| {
            if layer == 0 {
                return rest;
            }
            let mut f = OUR_MAC.to_vec();
            f.extend_from_slice(&[2, 0, 0, 0, 0, 2]);
            if layer == 1 {
                // ARP or IPv4 ethertype, random body.
                f.extend_from_slice(if flags & 1 == 0 { &[8, 6] } else { &[8, 0] });
                f.append(&mut rest);
                return f;
            }
            let tcp_len = 20 + rest.len().min(1400);
            let total = (20 + tcp_len) as u16;
            f.extend_from_slice(&[8, 0]);
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
            f.extend_from_slice(&[10, 0, 2, 2, 10, 0, 2, 15]);
            if layer == 2 {
                f.append(&mut rest);
                return f;
            }
            f.extend_from_slice(&sport.to_be_bytes());
            f.extend_from_slice(&80u16.to_be_bytes());
            f.extend_from_slice(&rest[..rest.len().min(8)]);
            f.extend_from_slice(&[0x50, flags, 0x10, 0, 0, 0, 0, 0]);
            f.extend_from_slice(&rest[rest.len().min(8)..rest.len().min(1400)]);
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No frame a peer can send makes the stack panic: the table, with a
    /// listener and a held Accept and Recv, keeps its limits and answers
    /// no call twice.
    #[test]
    fn hostile_frames_never_panic(frames in proptest::collection::vec(hostile_frame(), 1..64)) {
        let mut dev = Hostile { frames: frames.into(), sent: 0 };
        let cfg = Config::new(EthernetAddress(OUR_MAC).into());
        let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(10, 0, 2, 15), 24)).unwrap();
        });
        let mut set = SocketSet::new(Vec::new());
        let mut table = Sockets::new().unwrap();
        let mut kernel = FakeKernel::default();
        let l = table.listen(&mut set, 1, 80, 4).unwrap();
        table.accept(1, l, 1).unwrap();
        let mut now = Instant::ZERO;
        let mut token = 10;
        for _ in 0..80 {
            now += Duration::from_millis(1);
            iface.poll(now, &mut dev, &mut set);
            table.service(&mut set, &mut kernel, now);
            // Every accepted connection gets a held Recv.
            let accepted: Vec<Socket> = kernel.answers.iter().filter_map(|(_, r)| match r {
                Ok(Got::Accepted(s)) => Some(*s),
                _ => None,
            }).collect();
            for s in accepted {
                token += 1;
                kernel.grants.insert(token, vec![0; 512]);
                let _ = table.recv(1, s, 512, 512, token, None);
            }
        }
        prop_assert!(table.tcp_in_use <= TCP_SOCKETS);
        prop_assert!(table.entries.iter().flatten().count() as u64 == table.stats.sockets);
    }
}
