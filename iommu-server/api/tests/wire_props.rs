//! Property tests of the protocol: every request and response round-trips,
//! and every truncated, extended, mutated or random message decodes to an
//! error or to a value that re-encodes to exactly the same bytes; nothing
//! panics.

use abi::{Iova, StreamId};
use iommu_api::{
    ApiError, ClientSummary, Dir, Extent, FaultRecord, InvalidationPolicy, List, MAX_FAULT_RECORDS,
    MAX_MAP_ENTRIES, MAX_OVERVIEW_CLIENTS, MAX_UNMAP_ENTRIES, MSG_MAX, Op, Request, Response,
    ServerTotals, Stats, TrustLevel,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Req {
    Attach(u8),
    Map(Dir, Vec<Extent>),
    Unmap(Vec<Extent>),
    Flush,
    Stats,
    Faults,
    SetPolicy(InvalidationPolicy),
    ResetStats,
    Overview(u32),
}

impl Req {
    fn as_request(&self) -> Request<'_> {
        match self {
            Req::Attach(b) => Request::Attach { dma_bits: *b },
            Req::Map(dir, r) => Request::Map {
                dir: *dir,
                ranges: List::new(r),
            },
            Req::Unmap(r) => Request::Unmap {
                ranges: List::new(r),
            },
            Req::Flush => Request::Flush,
            Req::Stats => Request::Stats,
            Req::Faults => Request::Faults,
            Req::SetPolicy(p) => Request::SetPolicy { policy: *p },
            Req::ResetStats => Request::ResetStats,
            Req::Overview(first) => Request::Overview { first: *first },
        }
    }
}

#[derive(Debug, Clone)]
enum Resp {
    Attached(u32),
    Mapped(Vec<Iova>),
    Unmapped(u32),
    Flushed,
    Stats(Stats),
    Faults(Vec<FaultRecord>),
    PolicySet,
    StatsReset,
    Overview(ServerTotals, Vec<ClientSummary>),
    Error(ApiError),
}

fn extent() -> impl Strategy<Value = Extent> {
    (any::<u64>(), any::<u64>()).prop_map(|(s, l)| Extent::new(s, l))
}

fn dir() -> impl Strategy<Value = Dir> {
    prop_oneof![
        Just(Dir::ToDevice),
        Just(Dir::FromDevice),
        Just(Dir::Bidirectional)
    ]
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        any::<u8>().prop_map(Req::Attach),
        (dir(), prop::collection::vec(extent(), 1..=MAX_MAP_ENTRIES))
            .prop_map(|(d, r)| Req::Map(d, r)),
        prop::collection::vec(extent(), 1..=MAX_UNMAP_ENTRIES).prop_map(Req::Unmap),
        Just(Req::Flush),
        Just(Req::Stats),
        Just(Req::Faults),
        policy().prop_map(Req::SetPolicy),
        Just(Req::ResetStats),
        any::<u32>().prop_map(Req::Overview),
    ]
}

fn policy() -> impl Strategy<Value = InvalidationPolicy> {
    prop_oneof![
        Just(InvalidationPolicy::Strict),
        Just(InvalidationPolicy::StrictPerUnmap),
        Just(InvalidationPolicy::Bypass),
        (
            1..=iommu_api::policy::MAX_DEFERRED_ENTRIES,
            1..=iommu_api::policy::MAX_DEFERRED_AGE_US
        )
            .prop_map(|(n, t)| InvalidationPolicy::Deferred {
                max_entries: n,
                max_age_us: t
            }),
    ]
}

fn fault() -> impl Strategy<Value = FaultRecord> {
    (
        any::<u32>(),
        any::<u16>(),
        any::<bool>(),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(|(sid, kind, write, iova, count)| FaultRecord {
            sid: StreamId(sid),
            kind,
            write,
            iova: Iova::new(iova),
            count,
        })
}

fn summary() -> impl Strategy<Value = ClientSummary> {
    (
        any::<u32>(),
        "[a-z0-9é_.-]{0,20}",
        prop::sample::select(vec![
            TrustLevel::Untrusted,
            TrustLevel::Trusted,
            TrustLevel::Bench,
        ]),
        policy(),
        any::<(bool, bool, bool)>(),
        prop::array::uniform8(any::<u64>()),
    )
        .prop_map(|(badge, name, trust, policy, (d, q, a), c)| {
            let mut s = ClientSummary::new(badge, &name, trust, policy);
            (s.demoted, s.quarantined, s.attached) = (d, q, a);
            [
                s.maps,
                s.unmaps,
                s.tlbi_commands,
                s.syncs,
                s.faults,
                s.iova_bytes_in_use,
                s.pending_unmaps,
                s.mappings,
            ] = c;
            s
        })
}

fn resp() -> impl Strategy<Value = Resp> {
    prop_oneof![
        any::<u32>().prop_map(Resp::Attached),
        prop::collection::vec(any::<u64>().prop_map(Iova::new), 1..=MAX_MAP_ENTRIES)
            .prop_map(Resp::Mapped),
        any::<u32>().prop_map(Resp::Unmapped),
        Just(Resp::Flushed),
        prop::array::uniform25(any::<u64>()).prop_map(|a| Resp::Stats(Stats {
            maps: a[0],
            unmaps: a[1],
            tlbi_commands: a[2],
            syncs: a[3],
            faults: a[4],
            iova_bytes_in_use: a[5],
            pending_unmaps: a[6],
            max_stale_window_us: a[7],
            doorbells: a[8],
            server_ticks: a[9],
            mapped_bytes: a[10],
            mappings: a[11],
            table_pages: a[12],
            quota_mapped_bytes: a[13],
            quota_mappings: a[14],
            quota_table_pages: a[15],
            quota_iova_bytes: a[16],
            level: a[17],
            level_reason: a[18],
            event_overflows: a[19],
            fault_pages: a[20],
            map_ticks: a[21],
            unmap_ticks: a[22],
            flush_ticks: a[23],
            pin_ticks: a[24],
        })),
        prop::collection::vec(fault(), 0..=MAX_FAULT_RECORDS).prop_map(Resp::Faults),
        Just(Resp::PolicySet),
        Just(Resp::StatsReset),
        (
            prop::array::uniform16(any::<u64>()),
            prop::collection::vec(summary(), 0..=MAX_OVERVIEW_CLIENTS)
        )
            .prop_map(|(t, c)| Resp::Overview(ServerTotals::from_array(t), c)),
        prop::sample::select(ApiError::ALL.to_vec()).prop_map(Resp::Error),
    ]
}

impl Resp {
    fn op(&self) -> Op {
        match self {
            Resp::Attached(_) => Op::Attach,
            Resp::Mapped(_) => Op::Map,
            Resp::Unmapped(_) => Op::Unmap,
            Resp::Flushed => Op::Flush,
            Resp::Stats(_) => Op::Stats,
            Resp::Faults(_) => Op::Faults,
            Resp::PolicySet => Op::SetPolicy,
            Resp::StatsReset => Op::ResetStats,
            Resp::Overview(..) => Op::Overview,
            Resp::Error(_) => Op::Stats,
        }
    }

    fn encode(&self, buf: &mut [u8; MSG_MAX]) -> (usize, Result<Response<'_>, ApiError>) {
        let r = match self {
            Resp::Attached(s) => Response::Attached { sid: StreamId(*s) },
            Resp::Mapped(v) => Response::Mapped {
                iovas: List::new(v),
            },
            Resp::Unmapped(n) => Response::Unmapped { faults_pending: *n },
            Resp::Flushed => Response::Flushed,
            Resp::Stats(s) => Response::Stats(*s),
            Resp::Faults(v) => Response::Faults {
                records: List::new(v),
            },
            Resp::PolicySet => Response::PolicySet,
            Resp::StatsReset => Response::StatsReset,
            Resp::Overview(t, c) => Response::OverviewPage {
                totals: *t,
                clients: List::new(c),
            },
            Resp::Error(e) => return (Response::encode_error(*e, buf), Err(*e)),
        };
        (r.encode(buf).unwrap(), Ok(r))
    }
}

/// Decodes `msg` as a request and as a response to every op; whatever
/// decodes must re-encode to the same bytes.
fn check_any(msg: &[u8]) {
    if let Ok(r) = Request::decode(msg) {
        let mut buf = [0; MSG_MAX];
        let n = r.encode(&mut buf).expect("a decoded request re-encodes");
        assert_eq!(&buf[..n], msg);
    }
    for &op in Op::ALL {
        let mut buf = [0; MSG_MAX];
        match Response::decode(op, msg) {
            Ok(r) => {
                assert_eq!(r.op(), op);
                let n = r.encode(&mut buf).expect("a decoded response re-encodes");
                assert_eq!(&buf[..n], msg);
            }
            Err(e)
                if msg.len() == 8 && msg[..4] == e.code().to_le_bytes() && msg[4..] == [0; 4] =>
            {
                let n = Response::encode_error(e, &mut buf);
                assert_eq!(&buf[..n], msg);
            }
            Err(_) => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(r in req()) {
        let mut buf = [0; MSG_MAX];
        let n = r.as_request().encode(&mut buf).unwrap();
        prop_assert!(n <= MSG_MAX);
        prop_assert_eq!(Request::decode(&buf[..n]).unwrap(), r.as_request());
    }

    #[test]
    fn request_pages_sums_the_ranges_of_maps_and_unmaps(r in req()) {
        let mut buf = [0; MSG_MAX];
        let n = r.as_request().encode(&mut buf).unwrap();
        let pages = |e: &[Extent]| {
            e.iter()
                .fold(0u64, |s, e| s.saturating_add(e.len.div_ceil(abi::PAGE_SIZE)))
        };
        let expect = match &r {
            Req::Map(_, e) | Req::Unmap(e) => pages(e),
            _ => 0,
        };
        prop_assert_eq!(iommu_api::request_pages(&buf[..n]), expect);
        // Read from the header's count alone: never past the message.
        for cut in [0, n / 2, n.saturating_sub(1)] {
            prop_assert!(iommu_api::request_pages(&buf[..cut]) <= expect);
        }
    }

    #[test]
    fn responses_round_trip(r in resp()) {
        let mut buf = [0; MSG_MAX];
        let (n, expect) = r.encode(&mut buf);
        prop_assert_eq!(Response::decode(r.op(), &buf[..n]), expect);
    }

    #[test]
    fn mutated_requests_never_panic(r in req(), cut in any::<usize>(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4), extra in prop::collection::vec(any::<u8>(), 0..20)) {
        let mut buf = [0; MSG_MAX];
        let n = r.as_request().encode(&mut buf).unwrap();
        check_any(&buf[..cut % (n + 1)]);
        let mut m = buf[..n].to_vec();
        for (at, x) in &flips {
            let i = at % n;
            m[i] ^= x;
        }
        check_any(&m);
        let _ = iommu_api::request_pages(&m);
        m.extend_from_slice(&extra);
        check_any(&m);
    }

    #[test]
    fn mutated_responses_never_panic(r in resp(), cut in any::<usize>(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4)) {
        let mut buf = [0; MSG_MAX];
        let (n, _) = r.encode(&mut buf);
        check_any(&buf[..cut % (n + 1)]);
        let mut m = buf[..n].to_vec();
        for (at, x) in &flips {
            m[at % n] ^= x;
        }
        check_any(&m);
    }

    #[test]
    fn random_bytes_never_panic(m in prop::collection::vec(any::<u8>(), 0..300)) {
        check_any(&m);
    }
}

#[test]
fn refuses_bad_lists_and_headers() {
    let mut buf = [0; MSG_MAX];
    let none: [Extent; 0] = [];
    assert_eq!(
        Request::Unmap {
            ranges: List::new(&none)
        }
        .encode(&mut buf),
        Err(ApiError::Malformed)
    );
    let many = [Extent::new(0, 1); MAX_UNMAP_ENTRIES];
    assert_eq!(
        Request::Map {
            dir: Dir::ToDevice,
            ranges: List::new(&many)
        }
        .encode(&mut buf),
        Err(ApiError::TooMany)
    );
    assert_eq!(
        Request::Unmap {
            ranges: List::new(&many)
        }
        .encode(&mut buf)
        .unwrap(),
        // The 8-byte header and 63 16-byte extents: a full message.
        1016
    );
    // Op codes are stable: 1, 2, ... in declaration order; the next code
    // and 0 are unknown.
    for (i, &op) in Op::ALL.iter().enumerate() {
        assert_eq!(op as u16, i as u16 + 1);
        assert_eq!(Op::from_code(op as u16), Some(op));
    }
    let next = (Op::ALL.len() as u16 + 1).to_le_bytes();
    for code in [[0, 0], next] {
        assert_eq!(
            Request::decode(&[code[0], code[1], 0, 0, 0, 0, 0, 0]),
            Err(ApiError::UnknownOp)
        );
    }
    assert_eq!(
        Request::decode(&[4, 0, 0, 0, 1, 0, 0, 0]),
        Err(ApiError::Malformed)
    );
    assert_eq!(
        Request::decode(&[4, 0, 0, 0, 0, 0, 0, 0]),
        Ok(Request::Flush)
    );
    assert_eq!(Request::decode(&[4, 0, 0]), Err(ApiError::Malformed));
    // An Attach parameter entry with a stray byte.
    let mut m = [0u8; 24];
    m[0] = 1;
    m[2] = 1;
    m[8] = 28;
    assert_eq!(Request::decode(&m), Ok(Request::Attach { dma_bits: 28 }));
    m[9] = 1;
    assert_eq!(Request::decode(&m), Err(ApiError::Malformed));
    // A Map with a bad direction.
    let r = [Extent::new(0, 4096)];
    let n = Request::Map {
        dir: Dir::Bidirectional,
        ranges: List::new(&r),
    }
    .encode(&mut buf)
    .unwrap();
    buf[8] = 4;
    assert_eq!(Request::decode(&buf[..n]), Err(ApiError::Malformed));
    // The encoder refuses what the decoder would: a `Mapped` with no IOVA.
    let none: [Iova; 0] = [];
    assert_eq!(
        Response::Mapped {
            iovas: List::new(&none)
        }
        .encode(&mut buf),
        Err(ApiError::Malformed)
    );
    // Error responses.
    let n = Response::encode_error(ApiError::Quarantined, &mut buf);
    assert_eq!(
        Response::decode(Op::Map, &buf[..n]),
        Err(ApiError::Quarantined)
    );
    buf[0] = 99;
    assert_eq!(
        Response::decode(Op::Map, &buf[..n]),
        Err(ApiError::Malformed)
    );
}

#[test]
fn set_policy_wire_layout() {
    let mut buf = [0; MSG_MAX];
    let p = InvalidationPolicy::deferred(32, 500).unwrap();
    let n = Request::SetPolicy { policy: p }.encode(&mut buf).unwrap();
    let mut want = [0u8; 24];
    want[0] = 7; // op
    want[2] = 1; // count
    want[8] = 3; // deferred
    want[12..16].copy_from_slice(&32u32.to_le_bytes());
    want[16..24].copy_from_slice(&500u64.to_le_bytes());
    assert_eq!(&buf[..n], &want);
    assert_eq!(Request::decode(&want), Ok(Request::SetPolicy { policy: p }));
    // Zero bounds, bounds on a policy that has none, unknown kinds,
    // stray bytes: all malformed.
    let bad = |f: &dyn Fn(&mut [u8; 24])| {
        let mut m = want;
        f(&mut m);
        match Request::decode(&m)? {
            Request::SetPolicy { policy } => Ok(policy),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(bad(&|m| m[12..16].fill(0)), Err(ApiError::Malformed));
    assert_eq!(bad(&|m| m[16..24].fill(0)), Err(ApiError::Malformed));
    assert_eq!(bad(&|m| m[8] = 1), Err(ApiError::Malformed));
    assert_eq!(bad(&|m| m[8] = 0), Err(ApiError::Malformed));
    assert_eq!(bad(&|m| m[8] = 5), Err(ApiError::Malformed));
    assert_eq!(bad(&|m| m[9] = 1), Err(ApiError::Malformed));
    let bypass = |m: &mut [u8; 24]| {
        m[8] = 4;
        m[12..24].fill(0);
    };
    assert_eq!(bad(&bypass), Ok(InvalidationPolicy::Bypass));
    // The encoder refuses what the decoder would.
    assert_eq!(
        Request::SetPolicy {
            policy: InvalidationPolicy::Deferred {
                max_entries: 0,
                max_age_us: 1
            }
        }
        .encode(&mut buf),
        Err(ApiError::Malformed)
    );
    // Deferred bounds over their maxima are refused both ways.
    for (n, t) in [(u32::MAX, u64::MAX), (4097, 1), (1, 1_000_001)] {
        let policy = InvalidationPolicy::Deferred {
            max_entries: n,
            max_age_us: t,
        };
        assert_eq!(
            Request::SetPolicy { policy }.encode(&mut buf),
            Err(ApiError::Malformed)
        );
        let mut m = [0u8; 24];
        m[0] = 7; // SetPolicy
        m[2] = 1;
        m[8] = 3; // deferred
        m[12..16].copy_from_slice(&n.to_le_bytes());
        m[16..24].copy_from_slice(&t.to_le_bytes());
        assert_eq!(Request::decode(&m), Err(ApiError::Malformed));
    }
    // ResetStats: op 8, no entries; both answers carry no entries.
    assert_eq!(
        Request::decode(&[8, 0, 0, 0, 0, 0, 0, 0]),
        Ok(Request::ResetStats)
    );
    for (op, r) in [
        (Op::SetPolicy, Response::PolicySet),
        (Op::ResetStats, Response::StatsReset),
    ] {
        let n = r.encode(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0; 8]);
        assert_eq!(Response::decode(op, &buf[..n]), Ok(r));
    }
}

#[test]
fn stats_appends_its_new_counters() {
    let s = Stats {
        maps: 1,
        unmaps: 2,
        tlbi_commands: 3,
        syncs: 4,
        faults: 5,
        iova_bytes_in_use: 6,
        pending_unmaps: 7,
        max_stale_window_us: 8,
        doorbells: 9,
        server_ticks: 10,
        mapped_bytes: 11,
        mappings: 12,
        table_pages: 13,
        quota_mapped_bytes: 14,
        quota_mappings: 15,
        quota_table_pages: 16,
        quota_iova_bytes: 17,
        level: 18,
        level_reason: 19,
        event_overflows: 20,
        fault_pages: 21,
        map_ticks: 22,
        unmap_ticks: 23,
        flush_ticks: 24,
        pin_ticks: 25,
    };
    let mut buf = [0; MSG_MAX];
    let n = Response::Stats(s).encode(&mut buf).unwrap();
    assert_eq!(n, 8 + 25 * 8);
    assert_eq!(buf[4], 25);
    for i in 0..25u64 {
        let at = 8 + 8 * i as usize;
        assert_eq!(buf[at..at + 8], (i + 1).to_le_bytes());
    }
    // The old eight-, ten-, seventeen- and twenty-one-counter bodies are no
    // longer Stats answers.
    for old in [8u8, 10, 17, 21] {
        buf[4] = old;
        assert_eq!(
            Response::decode(Op::Stats, &buf[..8 + 8 * usize::from(old)]),
            Err(ApiError::Malformed)
        );
    }
}

proptest! {
    /// The one-IOVA `Mapped` encoder writes exactly what the general
    /// encoder writes, into buffers of any length.
    #[test]
    fn mapped_one_encodes_as_the_general_encoder(v in any::<u64>(), len in 0usize..=64) {
        let iova = [Iova::new(v)];
        let mut general = vec![0xa5u8; len];
        let mut one = vec![0xa5u8; len];
        let g = Response::Mapped { iovas: List::new(&iova) }.encode_into(&mut general);
        let o = Response::encode_mapped_one(iova[0], &mut one);
        prop_assert_eq!(g, o);
        prop_assert_eq!(general, one);
    }
}
