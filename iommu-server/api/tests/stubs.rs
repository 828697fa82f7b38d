//! The generated client stubs and server dispatch agree: a `Client` over a
//! loopback transport that decodes each message, dispatches it to a
//! `Handler` and encodes its answer gets back exactly what the handler
//! answered, for every request; refusals travel as errors.

use core::cell::RefCell;

use abi::{Iova, StreamId};
use iommu_api::{
    ApiError, Client, Dir, Extent, FaultRecord, Handler, InvalidationPolicy, List, MSG_MAX, Op,
    Request, Response, Stats, Transport,
};

/// A handler that records what it was called with and answers with fixed
/// values (or refuses `Unmap` of more than two ranges).
struct Mock<'l> {
    log: &'l RefCell<Vec<String>>,
    buf: &'l mut [u8; MSG_MAX],
}

const IOVAS: [Iova; 2] = [Iova::new(0x1000), Iova::new(0x2000)];
const RECORD: FaultRecord = FaultRecord {
    sid: StreamId(8),
    kind: 0x10,
    write: true,
    iova: Iova::new(0x3000),
    count: 2,
};

impl Mock<'_> {
    fn answer(self, r: Result<Response<'_>, ApiError>) -> usize {
        match r.and_then(|r| r.encode(self.buf)) {
            Ok(n) => n,
            Err(e) => Response::encode_error(e, self.buf),
        }
    }
}

impl<'a> Handler<'a> for Mock<'_> {
    type Out = usize;
    fn attach(self, dma_bits: u8) -> usize {
        self.log.borrow_mut().push(format!("attach {dma_bits}"));
        self.answer(Ok(Response::Attached {
            sid: StreamId(u32::from(dma_bits)),
        }))
    }
    fn map(self, dir: Dir, ranges: List<'a, Extent>) -> usize {
        self.log
            .borrow_mut()
            .push(format!("map {dir:?} {ranges:?}"));
        let n = ranges.len().min(IOVAS.len());
        self.answer(Ok(Response::Mapped {
            iovas: List::new(&IOVAS[..n]),
        }))
    }
    fn unmap(self, ranges: List<'a, Extent>) -> usize {
        self.log.borrow_mut().push(format!("unmap {ranges:?}"));
        if ranges.len() > 2 {
            return self.answer(Err(ApiError::TooMany));
        }
        self.answer(Ok(Response::Unmapped { faults_pending: 3 }))
    }
    fn flush(self) -> usize {
        self.log.borrow_mut().push("flush".into());
        self.answer(Ok(Response::Flushed))
    }
    fn stats(self) -> usize {
        self.log.borrow_mut().push("stats".into());
        self.answer(Ok(Response::Stats(Stats {
            maps: 1,
            server_ticks: 9,
            ..Stats::default()
        })))
    }
    fn faults(self) -> usize {
        self.log.borrow_mut().push("faults".into());
        self.answer(Ok(Response::Faults {
            records: List::new(&[RECORD]),
        }))
    }
    fn set_policy(self, policy: InvalidationPolicy) -> usize {
        self.log.borrow_mut().push(format!("set_policy {policy:?}"));
        self.answer(Ok(Response::PolicySet))
    }
    fn reset_stats(self) -> usize {
        self.log.borrow_mut().push("reset_stats".into());
        self.answer(Ok(Response::StatsReset))
    }
}

/// Decodes, dispatches to a [`Mock`], returns its encoded answer.
struct Loopback {
    log: RefCell<Vec<String>>,
}

impl Transport for Loopback {
    type Error = ApiError;
    fn call(&self, msg: &[u8], reply: &mut [u8; MSG_MAX]) -> Result<usize, ApiError> {
        match Request::decode(msg) {
            Ok(req) => Ok(req.dispatch(Mock {
                log: &self.log,
                buf: reply,
            })),
            Err(e) => Ok(Response::encode_error(e, reply)),
        }
    }
}

#[test]
fn every_stub_reaches_its_handler() {
    let c = Client(Loopback {
        log: RefCell::new(Vec::new()),
    });
    let mut r = [0; MSG_MAX];
    assert_eq!(c.attach(&mut r, 28), Ok(StreamId(28)));
    let ranges = [Extent::new(0, 4096), Extent::new(8192, 100)];
    let got = c.map(&mut r, Dir::FromDevice, List::new(&ranges)).unwrap();
    assert_eq!(got, List::new(&IOVAS));
    assert_eq!(c.unmap(&mut r, List::new(&ranges)), Ok(3));
    assert_eq!(
        c.unmap(&mut r, List::new(&[Extent::new(0, 1); 3])),
        Err(ApiError::TooMany)
    );
    assert_eq!(c.flush(&mut r), Ok(()));
    let s = c.stats(&mut r).unwrap();
    assert_eq!((s.maps, s.server_ticks), (1, 9));
    assert_eq!(c.faults(&mut r).unwrap(), List::new(&[RECORD]));
    let p = InvalidationPolicy::deferred(4, 50).unwrap();
    assert_eq!(c.set_policy(&mut r, p), Ok(()));
    assert_eq!(c.reset_stats(&mut r), Ok(()));
    // Refused by the encoder: never sent.
    let none: [Extent; 0] = [];
    assert_eq!(c.unmap(&mut r, List::new(&none)), Err(ApiError::Malformed));
    let log = c.0.log.borrow();
    assert_eq!(log.len(), 9, "{log:?}");
    assert_eq!(log[0], "attach 28");
    assert!(log[1].starts_with("map FromDevice"));
    assert_eq!(log[7], format!("set_policy {p:?}"));
    // One stub per op.
    assert_eq!(Op::ALL.len(), 8);
}
