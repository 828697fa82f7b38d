//! A toy protocol through `protocol!`: the framing both status widths
//! produce, header-carried (`arg`) fields packed in declaration order, a
//! request-wide check, tuple and brace variants, and lists.

use abi::Iova;
use ipc_proto::wire::{put, u16_at};
use ipc_proto::{List, MSG_MAX, Refused, RequestField, ResponseField, WireError, protocol};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ToyError {
    Malformed,
    UnknownOp,
    TooMany,
    Busy,
}

impl From<Refused> for ToyError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Malformed => ToyError::Malformed,
            Refused::UnknownOp => ToyError::UnknownOp,
            Refused::TooMany => ToyError::TooMany,
        }
    }
}

impl WireError for ToyError {
    const STATUS_BYTES: usize = 2;
    fn wire_code(self) -> u32 {
        self as u32 + 1
    }
    fn from_wire_code(code: u32) -> Option<Self> {
        [
            ToyError::Malformed,
            ToyError::UnknownOp,
            ToyError::TooMany,
            ToyError::Busy,
        ]
        .get(usize::try_from(code).ok()?.checked_sub(1)?)
        .copied()
    }
}

/// Eight bits of `arg`.
impl RequestField<'_, ToyError> for u8 {
    const ENTRY: usize = 0;
    const ARG_BITS: u32 = 8;
    const MIN: usize = 0;
    const MAX: usize = 0;
    fn arg(&self) -> u32 {
        u32::from(*self)
    }
    fn write(&self, _: &mut [u8]) -> Result<(), ToyError> {
        Ok(())
    }
    fn read(arg: u32, _: &[u8]) -> Result<Self, ToyError> {
        Ok(arg as u8)
    }
}

/// One 4-byte entry.
impl RequestField<'_, ToyError> for u16 {
    const ENTRY: usize = 4;
    fn write(&self, out: &mut [u8]) -> Result<(), ToyError> {
        put(out, 0, &self.to_le_bytes());
        Ok(())
    }
    fn read(_: u32, b: &[u8]) -> Result<Self, ToyError> {
        u16_at(b, 0).ok_or(ToyError::Malformed)
    }
}

/// 1..=4 IOVAs.
impl<'a> RequestField<'a, ToyError> for List<'a, Iova> {
    const ENTRY: usize = 8;
    const MAX: usize = 4;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) -> Result<(), ToyError> {
        self.write_all(out);
        Ok(())
    }
    fn read(_: u32, b: &'a [u8]) -> Result<Self, ToyError> {
        Ok(List::from_wire(b, b.len() / 8)?)
    }
}

/// 1..=4 IOVAs.
impl<'a> ResponseField<'a, ToyError> for List<'a, Iova> {
    const ENTRY: usize = 8;
    const MAX: usize = 4;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) {
        self.write_all(out);
    }
    fn read(b: &'a [u8]) -> Result<Self, ToyError> {
        Ok(List::from_wire(b, b.len() / 8)?)
    }
}

fn ordered(lo: &u8, hi: &u8, _len: &u16) -> bool {
    lo <= hi
}

protocol! {
    error: ToyError;

    /// Two arg fields and an entry.
    1 Window {
        /// Low bound.
        lo: u8,
        /// High bound.
        hi: u8,
        /// Length.
        len: u16,
    } if ordered => fn window
    -> /// Answer.
       Addresses(iovas: List<'a, Iova>);

    /// A tuple request.
    2 Poke(v: List<'a, Iova>) => fn poke
    -> /// Answer.
       Poked;
}

#[test]
fn arg_fields_pack_in_order_and_unused_bits_are_refused() {
    let mut buf = [0u8; MSG_MAX];
    let r = Request::Window {
        lo: 3,
        hi: 9,
        len: 0x1234,
    };
    let n = r.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[1, 0, 1, 0, 3, 9, 0, 0, 0x34, 0x12, 0, 0]);
    assert_eq!(Request::decode(&buf[..n]), Ok(r));
    buf[6] = 1;
    assert_eq!(Request::decode(&buf[..n]), Err(ToyError::Malformed));
    let bad = Request::Window {
        lo: 9,
        hi: 3,
        len: 0,
    };
    assert_eq!(bad.encode(&mut buf), Err(ToyError::Malformed));
    let v = [Iova::new(7)];
    let n = Request::Poke(List::new(&v)).encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[2, 0, 1, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(Request::decode(&buf[..n]), Ok(Request::Poke(List::new(&v))));
    assert_eq!(Request::decode(&buf[..n - 1]), Err(ToyError::Malformed));
    buf[0] = 3;
    assert_eq!(Request::decode(&buf[..n]), Err(ToyError::UnknownOp));
}

#[test]
fn responses_and_errors_frame_with_a_two_byte_status() {
    let mut buf = [0u8; MSG_MAX];
    let v = [Iova::new(0x1000), Iova::new(0x2000)];
    let n = Response::Addresses(List::new(&v)).encode(&mut buf).unwrap();
    assert_eq!(&buf[..8], &[0, 0, 2, 0, 0, 0, 0, 0]);
    assert_eq!(
        Response::decode(Op::Window, &buf[..n]),
        Ok(Response::Addresses(List::new(&v)))
    );
    assert_eq!(
        Response::decode(Op::Poke, &buf[..n]),
        Err(ToyError::Malformed)
    );
    let many = [Iova::new(0); 5];
    assert_eq!(
        Response::Addresses(List::new(&many)).encode(&mut buf),
        Err(ToyError::TooMany)
    );
    let n = Response::encode_error(ToyError::Busy, &mut buf);
    assert_eq!(&buf[..n], &[4, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(Response::decode(Op::Poke, &buf[..n]), Err(ToyError::Busy));
    buf[5] = 1;
    assert_eq!(
        Response::decode(Op::Poke, &buf[..n]),
        Err(ToyError::Malformed)
    );
}

#[test]
fn responses_encode_into_short_dirty_buffers_alike() {
    let v = [Iova::new(0x1000), Iova::new(0x2000)];
    let r = Response::Addresses(List::new(&v));
    let mut full = [0u8; MSG_MAX];
    let n = r.encode(&mut full).unwrap();
    // Every byte is written: a buffer full of garbage, just long enough,
    // gets the same message.
    let mut short = [0xa5u8; 24];
    assert_eq!(r.encode_into(&mut short[..n]), Ok(n));
    assert_eq!(&short[..n], &full[..n]);
    // One byte short, or shorter than a header: refused.
    assert_eq!(r.encode_into(&mut short[..n - 1]), Err(ToyError::TooMany));
    assert_eq!(r.encode_into(&mut short[..3]), Err(ToyError::TooMany));
}
