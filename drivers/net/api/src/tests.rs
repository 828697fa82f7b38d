//! Host tests of the codec: round trips, refusals, golden codes, and
//! "decoding never panics on any bytes".

use super::*;
use proptest::prelude::*;

fn frame() -> impl Strategy<Value = Frame> {
    (any::<u32>(), any::<u16>()).prop_map(|(offset, len)| Frame { offset, len })
}

proptest! {
    #[test]
    fn send_round_trips(frames in proptest::collection::vec(frame(), 1..=MAX_FRAMES)) {
        let mut buf = [0u8; MSG_MAX];
        let n = Request::Send(Frames::new(&frames)).encode(&mut buf).unwrap();
        let Request::Send(got) = Request::decode(&buf[..n]).unwrap() else { panic!("not a send") };
        prop_assert_eq!(got.iter().collect::<Vec<_>>(), frames);
    }

    #[test]
    fn received_round_trips(frames in proptest::collection::vec(frame(), 0..=MAX_FRAMES)) {
        let mut buf = [0u8; MSG_MAX];
        let n = Response::Received(Frames::new(&frames)).encode(&mut buf).unwrap();
        let Response::Received(got) = Response::decode(Op::Receive, &buf[..n]).unwrap() else { panic!("not received") };
        prop_assert_eq!(got.iter().collect::<Vec<_>>(), frames);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        if let Ok(Request::Send(f)) = Request::decode(&bytes) {
            prop_assert_eq!(f.iter().count(), f.len());
        }
        for &op in Op::ALL {
            if let Ok(Response::Received(f)) = Response::decode(op, &bytes) {
                prop_assert_eq!(f.iter().count(), f.len());
            }
        }
    }

    #[test]
    fn frame_check_matches_its_definition(f in frame(), grant in any::<u32>()) {
        let ok = (MIN_FRAME..=MAX_FRAME).contains(&usize::from(f.len))
            && u64::from(f.offset) + u64::from(f.len) <= u64::from(grant);
        prop_assert_eq!(f.check(u64::from(grant)).is_ok(), ok);
    }
}

#[test]
fn info_stats_sent_and_modes_round_trip() {
    let mut buf = [0u8; MSG_MAX];
    let info = Info {
        mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
        mtu: MTU,
        link_up: true,
        rx_slots: 64,
        tx_slots: 32,
    };
    let n = Response::Info(info).encode(&mut buf).unwrap();
    assert_eq!(
        Response::decode(Op::Info, &buf[..n]),
        Ok(Response::Info(info))
    );
    buf[HEADER_BYTES + 8] = 2;
    assert_eq!(
        Response::decode(Op::Info, &buf[..n]),
        Err(NetError::Malformed)
    );

    let s = NetStats {
        rx_frames: 1,
        tx_bytes: 5,
        notifications: 12,
        ..Default::default()
    };
    let n = Response::Stats(s).encode(&mut buf).unwrap();
    assert_eq!(
        Response::decode(Op::Stats, &buf[..n]),
        Ok(Response::Stats(s))
    );

    let n = Response::Sent { accepted: 7 }.encode(&mut buf).unwrap();
    assert_eq!(
        Response::decode(Op::Send, &buf[..n]),
        Ok(Response::Sent { accepted: 7 })
    );

    for m in [NetMode::Bypass, NetMode::Strict] {
        let n = Request::SetMode(m).encode(&mut buf).unwrap();
        assert_eq!(Request::decode(&buf[..n]), Ok(Request::SetMode(m)));
    }
    let n = Request::SetMode(NetMode::Strict).encode(&mut buf).unwrap();
    buf[4] = 3;
    assert_eq!(Request::decode(&buf[..n]), Err(NetError::Malformed));
}

#[test]
fn receive_window_is_checked_both_ways() {
    let mut buf = [0u8; MSG_MAX];
    let n = Request::Receive { max: 8 }.encode(&mut buf).unwrap();
    assert_eq!(Request::decode(&buf[..n]), Ok(Request::Receive { max: 8 }));
    assert_eq!(
        Request::Receive { max: 0 }.encode(&mut buf),
        Err(NetError::Malformed)
    );
    assert_eq!(
        Request::Receive {
            max: MAX_FRAMES as u16 + 1
        }
        .encode(&mut buf),
        Err(NetError::Malformed)
    );
    let n = Request::Receive { max: 1 }.encode(&mut buf).unwrap();
    buf[4] = 0;
    assert_eq!(Request::decode(&buf[..n]), Err(NetError::Malformed));
    let n = Response::Received(Frames::new(&[]))
        .encode(&mut buf)
        .unwrap();
    assert_eq!(n, HEADER_BYTES);
    let Ok(Response::Received(f)) = Response::decode(Op::Receive, &buf[..n]) else {
        panic!("empty Received must decode")
    };
    assert!(f.is_empty());
}

#[test]
fn malformed_requests_are_refused() {
    let mut buf = [0u8; MSG_MAX];
    assert_eq!(
        Request::Send(Frames::new(&[])).encode(&mut buf),
        Err(NetError::Malformed)
    );
    let f = Frame { offset: 0, len: 60 };
    let n = Request::Send(Frames::new(&[f, f]))
        .encode(&mut buf)
        .unwrap();
    buf[HEADER_BYTES + FRAME_BYTES + 7] = 1;
    assert_eq!(Request::decode(&buf[..n]), Err(NetError::Malformed));
    assert_eq!(Request::decode(&buf[..n - 1]), Err(NetError::Malformed));
    buf[0] = 9;
    assert_eq!(Request::decode(&buf[..n]), Err(NetError::UnknownOp));
    let n = Response::encode_error(NetError::NotGranted, &mut buf);
    assert_eq!(
        Response::decode(Op::Send, &buf[..n]),
        Err(NetError::NotGranted)
    );
    assert_eq!(Request::decode(&[]), Err(NetError::Malformed));
}

#[test]
fn frame_limits() {
    let ok = Frame {
        offset: 100,
        len: MAX_FRAME as u16,
    };
    assert_eq!(ok.check(100 + MAX_FRAME as u64), Ok(()));
    assert_eq!(ok.check(99 + MAX_FRAME as u64), Err(NetError::NotGranted));
    let big = Frame {
        offset: 0,
        len: MAX_FRAME as u16 + 1,
    };
    assert_eq!(big.check(1 << 20), Err(NetError::BadLength));
    let short = Frame { offset: 0, len: 13 };
    assert_eq!(short.check(1 << 20), Err(NetError::BadLength));
}

/// The protocol as shipped: every error's code and every op's code. A
/// renumbering, a reordering, a variant missing from `ALL` or one added
/// without an entry here fails.
const GOLDEN: [(NetError, u16); 9] = [
    (NetError::Malformed, 1),
    (NetError::UnknownOp, 2),
    (NetError::NotGranted, 3),
    (NetError::BadLength, 4),
    (NetError::NotPermitted, 5),
    (NetError::Busy, 6),
    (NetError::Iommu, 7),
    (NetError::DeviceError, 8),
    (NetError::NotClient, 9),
];

#[test]
fn error_codes_are_the_golden_ones() {
    assert_eq!(NetError::ALL.len(), GOLDEN.len());
    for (e, (want, code)) in NetError::ALL.iter().zip(GOLDEN) {
        assert_eq!((*e, e.code()), (want, code));
        assert_eq!(e.name(), format!("{e:?}"));
    }
    for e in (0..=u16::MAX).filter_map(NetError::from_code) {
        assert!(NetError::ALL.contains(&e), "{e:?} missing from ALL");
    }
    assert_eq!(NetError::from_code(0), None);
    assert_eq!(NetError::from_code(10), None);
}

#[test]
fn op_codes_are_the_golden_ones() {
    let codes: Vec<(Op, u16)> = Op::ALL.iter().map(|&o| (o, o as u16)).collect();
    assert_eq!(
        codes,
        [
            (Op::Info, 1),
            (Op::Send, 2),
            (Op::Receive, 3),
            (Op::Stats, 4),
            (Op::SetMode, 5),
        ]
    );
    assert_eq!(MAX_FRAMES, 127);
    assert_eq!(NetStats::FIELDS, 12);
}
