//! The generated client stubs: each sends exactly its request's encoding
//! and returns the fields of its response; an error status comes back as
//! that error, a response to another op as `Malformed`, and a request the
//! encoder refuses is never sent.

use core::cell::RefCell;

use abi::{Iova, StreamId};
use iommu_api::{
    ApiError, Client, ClientSummary, Dir, Extent, FaultRecord, InvalidationPolicy, List,
    MAX_OVERVIEW_CLIENTS, MSG_MAX, Request, Response, ServerTotals, Stats, Transport, TrustLevel,
};

/// Records each message sent; answers with the bytes queued.
#[derive(Default)]
struct Canned {
    sent: RefCell<Vec<Vec<u8>>>,
    answer: RefCell<Vec<u8>>,
}

impl Canned {
    fn answer(&self, r: Result<Response<'_>, ApiError>) {
        let mut buf = [0; MSG_MAX];
        let n = match r {
            Ok(r) => r.encode(&mut buf).unwrap(),
            Err(e) => Response::encode_error(e, &mut buf),
        };
        *self.answer.borrow_mut() = buf[..n].to_vec();
    }

    /// The last message sent, decoded.
    fn last(&self, check: impl FnOnce(Request<'_>)) {
        let sent = self.sent.borrow();
        check(Request::decode(sent.last().unwrap()).unwrap());
    }
}

impl Transport for &Canned {
    type Error = ApiError;
    fn call(&self, msg: &[u8], reply: &mut [u8; MSG_MAX]) -> Result<usize, ApiError> {
        self.sent.borrow_mut().push(msg.to_vec());
        let a = self.answer.borrow();
        reply[..a.len()].copy_from_slice(&a);
        Ok(a.len())
    }
}

#[test]
fn stubs_send_their_request_and_return_their_response() {
    let t = Canned::default();
    let c = Client(&t);
    let mut r = [0; MSG_MAX];

    t.answer(Ok(Response::Attached { sid: StreamId(7) }));
    assert_eq!(c.attach(&mut r, 28), Ok(StreamId(7)));
    t.last(|q| assert_eq!(q, Request::Attach { dma_bits: 28 }));

    let ranges = [Extent::new(0, 4096), Extent::new(8192, 100)];
    let iovas = [Iova::new(0x1000), Iova::new(0x2064)];
    t.answer(Ok(Response::Mapped {
        iovas: List::new(&iovas),
    }));
    let got = c.map(&mut r, Dir::FromDevice, List::new(&ranges)).unwrap();
    assert_eq!(got, List::new(&iovas));
    t.last(|q| {
        assert_eq!(
            q,
            Request::Map {
                dir: Dir::FromDevice,
                ranges: List::new(&ranges)
            }
        )
    });

    t.answer(Ok(Response::Unmapped { faults_pending: 3 }));
    assert_eq!(c.unmap(&mut r, List::new(&ranges)), Ok(3));

    t.answer(Ok(Response::Flushed));
    assert_eq!(c.flush(&mut r), Ok(()));
    t.last(|q| assert_eq!(q, Request::Flush));

    let s = Stats {
        maps: 1,
        server_ticks: 9,
        ..Stats::default()
    };
    t.answer(Ok(Response::Stats(s)));
    assert_eq!(c.stats(&mut r), Ok(s));

    let rec = [FaultRecord {
        sid: StreamId(8),
        kind: 0x10,
        write: true,
        iova: Iova::new(0x3000),
        count: 2,
    }];
    t.answer(Ok(Response::Faults {
        records: List::new(&rec),
    }));
    assert_eq!(c.faults(&mut r), Ok(List::new(&rec)));

    let p = InvalidationPolicy::deferred(4, 50).unwrap();
    t.answer(Ok(Response::PolicySet));
    assert_eq!(c.set_policy(&mut r, p), Ok(()));
    t.last(|q| assert_eq!(q, Request::SetPolicy { policy: p }));

    t.answer(Ok(Response::StatsReset));
    assert_eq!(c.reset_stats(&mut r), Ok(()));
    t.last(|q| assert_eq!(q, Request::ResetStats));

    let mut one = ClientSummary::new(
        2,
        "virtio-net",
        TrustLevel::Untrusted,
        InvalidationPolicy::Strict,
    );
    one.maps = 5;
    one.syncs = 2;
    let page = [one; MAX_OVERVIEW_CLIENTS];
    let totals = ServerTotals {
        clients: 9,
        syncs: 4,
        ..ServerTotals::default()
    };
    t.answer(Ok(Response::OverviewPage {
        totals,
        clients: List::new(&page),
    }));
    assert_eq!(c.overview(&mut r, 1), Ok((totals, List::new(&page))));
    t.last(|q| assert_eq!(q, Request::Overview { first: 1 }));
    // A page longer than a message holds is never encoded.
    let too_many = [one; MAX_OVERVIEW_CLIENTS + 1];
    let mut buf = [0; MSG_MAX];
    assert_eq!(
        Response::OverviewPage {
            totals,
            clients: List::new(&too_many)
        }
        .encode(&mut buf),
        Err(ApiError::TooMany)
    );

    // An error status is that error; an answer to another op is malformed.
    t.answer(Err(ApiError::Quarantined));
    assert_eq!(c.flush(&mut r), Err(ApiError::Quarantined));
    t.answer(Ok(Response::Unmapped { faults_pending: 0 }));
    assert_eq!(c.reset_stats(&mut r), Err(ApiError::Malformed));

    // Refused by the encoder: never sent.
    let before = t.sent.borrow().len();
    let none: [Extent; 0] = [];
    assert_eq!(c.unmap(&mut r, List::new(&none)), Err(ApiError::Malformed));
    assert_eq!(t.sent.borrow().len(), before);
}
