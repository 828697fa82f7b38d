//! The `protocol!` macro: from one declaration per request (op code,
//! request name and fields, handler/stub method name, response name and
//! fields, doc comments) it generates everything both sides need:
//!
//! - `Op` with `from_code` and `ALL`;
//! - `Request` and `Response` with `op()`, `encode` and the validating
//!   `decode` (and `Response::encode_error`), laid out field by field
//!   through [`RequestField`](crate::RequestField) and
//!   [`ResponseField`](crate::ResponseField);
//! - the server side: `Handler`, one method per request, and
//!   `Request::dispatch`;
//! - the client side: `Client`, one stub per request, over any
//!   [`Transport`](crate::Transport).
//!
//! It owns no layout of its own: field types do (in each protocol's
//! crate), and the headers live in `request.rs` and `response.rs`.
//! Generated decoders never panic and never allocate; nothing here may
//! know what a request means.

/// Declares a protocol whose refusals are `$err` (a
/// [`WireError`](crate::WireError)). One entry per request:
///
/// ```text
/// error: ErrorType;
///
/// /// docs (the op, the request, the handler and the stub)
/// CODE RequestName { field: Type, ... } if check => fn method_name
///     -> /// docs
///        ResponseName { field: Type, ... };
/// ```
///
/// Either side may be a unit variant (no braces) or a one-field tuple
/// variant, `Name(field: Type)`. `if check` is optional: a function
/// `fn(&Field1, &Field2, ...) -> bool` over the request's fields that
/// both the encoder and the decoder require (a request-wide rule no single
/// field can check, e.g. `min <= max`); false is `Malformed`. Request
/// field types implement `RequestField<'a, ErrorType>`, response field
/// types `ResponseField<'a, ErrorType>`; `'a` is the message's lifetime.
#[macro_export]
macro_rules! protocol {
    (
        error: $err:ty;
        $(
            $(#[$rq_meta:meta])*
            $code:literal $req:ident
                $({ $( $(#[$rqf_meta:meta])* $rqf:ident : $rqt:ty ),* $(,)? })?
                $(( $rtf:ident : $rtt:ty ))?
                $(if $check:path)?
            => fn $method:ident
            -> $(#[$rs_meta:meta])*
                $resp:ident
                $({ $( $(#[$rsf_meta:meta])* $rsf:ident : $rst:ty ),* $(,)? })?
                $(( $tf:ident : $tt:ty ))?
            ;
        )*
    ) => {
        /// Operation codes (the request header's `op`). Stable.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Op {
            $( $(#[$rq_meta])* $req = $code, )*
        }

        impl Op {
            /// Every op, in declaration order.
            pub const ALL: &'static [Op] = &[$(Op::$req),*];

            /// The op for a code.
            pub const fn from_code(v: u16) -> Option<Op> {
                match v {
                    $( $code => Some(Op::$req), )*
                    _ => None,
                }
            }
        }

        /// A request, client to server.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Request<'a> {
            $(
                $(#[$rq_meta])*
                $req $({ $( $(#[$rqf_meta])* $rqf: $rqt ),* })? $(($rtt))?,
            )*
            /// Never built: it uses `'a` for protocols none of whose
            /// fields borrow the message.
            #[doc(hidden)]
            __Unused(core::convert::Infallible, core::marker::PhantomData<&'a ()>),
        }

        impl<'a> Request<'a> {
            /// The request's op.
            pub const fn op(&self) -> Op {
                match self {
                    $( Request::$req { .. } => Op::$req, )*
                    Request::__Unused(never, _) => match *never {},
                }
            }

            /// Encodes into `buf`, returning the message length. Refuses
            /// lists that are empty (`Malformed`) or too long (`TooMany`),
            /// and values the protocol never sends (`Malformed`).
            pub fn encode(&self, buf: &mut [u8; $crate::MSG_MAX]) -> Result<usize, $err> {
                match *self {
                    $( Request::$req $({ $($rqf),* })? $(($rtf))? => {
                        $crate::protocol!(@check $err, [$($check)?]; $($($rqf),*)? $($rtf)?);
                        $crate::protocol!(@encode_request buf, Op::$req as u16, $err;
                            $($($rqf: $rqt),*)? $($rtf: $rtt)?)
                    } )*
                    Request::__Unused(never, _) => match never {},
                }
            }

            /// Decodes a request message. An unknown op is `UnknownOp`.
            pub fn decode(msg: &'a [u8]) -> Result<Request<'a>, $err> {
                let (op, count, arg, body) = $crate::request::decode_header::<$err>(msg)?;
                let op = Op::from_code(op).ok_or($crate::Refused::UnknownOp)?;
                match op {
                    $( Op::$req => {
                        $crate::protocol!(@decode_request body, count, arg, $err;
                            $($($rqf: $rqt),*)? $($rtf: $rtt)?);
                        $crate::protocol!(@check $err, [$($check)?]; $($($rqf),*)? $($rtf)?);
                        Ok(Request::$req $({ $($rqf),* })? $(($rtf))?)
                    } )*
                }
            }

            /// Hands the request's fields to the handler's method for it.
            pub fn dispatch<H: Handler<'a>>(self, handler: H) -> H::Out {
                match self {
                    $( Request::$req $({ $($rqf),* })? $(($rtf))? => {
                        handler.$method($($($rqf),*)? $($rtf)?)
                    } )*
                    Request::__Unused(never, _) => match never {},
                }
            }
        }

        /// A successful response, server to client.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Response<'a> {
            $(
                $(#[$rs_meta])*
                $resp $({ $( $(#[$rsf_meta])* $rsf: $rst ),* })? $(($tt))?,
            )*
            /// Never built: it uses `'a` for protocols none of whose
            /// fields borrow the message.
            #[doc(hidden)]
            __Unused(core::convert::Infallible, core::marker::PhantomData<&'a ()>),
        }

        impl<'a> Response<'a> {
            /// The op this response answers.
            pub const fn op(&self) -> Op {
                match self {
                    $( Response::$resp { .. } => Op::$req, )*
                    Response::__Unused(never, _) => match *never {},
                }
            }

            /// Encodes a success response into `buf`, returning its length.
            /// Refuses too many entries (`TooMany`) and too few
            /// (`Malformed`).
            pub fn encode(&self, buf: &mut [u8; $crate::MSG_MAX]) -> Result<usize, $err> {
                self.encode_into(buf)
            }

            /// As [`Response::encode`] into a buffer of any length (a
            /// short one for the usual small answers, with no message
            /// buffer to clear): a response longer than `buf` is
            /// `TooMany`, and `buf` need not be zeroed.
            pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize, $err> {
                match *self {
                    $( Response::$resp $({ $($rsf),* })? $(($tf))? => {
                        $crate::protocol!(@encode_response buf, $err;
                            $($($rsf: $rst),*)? $($tf: $tt)?)
                    } )*
                    Response::__Unused(never, _) => match never {},
                }
            }

            /// Encodes an error response (no entries) into `buf`,
            /// returning its length.
            pub fn encode_error(error: $err, buf: &mut [u8; $crate::MSG_MAX]) -> usize {
                $crate::response::encode_error(error, buf)
            }

            /// Encodes a server's answer into `buf`, returning its length:
            /// the response, or the error (a response that cannot be
            /// encoded answers with why).
            pub fn encode_result(
                r: Result<Response<'_>, $err>,
                buf: &mut [u8; $crate::MSG_MAX],
            ) -> usize {
                match r {
                    Ok(resp) => resp
                        .encode(buf)
                        .unwrap_or_else(|e| $crate::response::encode_error(e, buf)),
                    Err(e) => $crate::response::encode_error(e, buf),
                }
            }

            /// Decodes the response to a request of kind `op`. A response
            /// carrying an error status decodes to `Err(that error)`; a
            /// message that is not a valid response to `op` to `Malformed`.
            pub fn decode(op: Op, msg: &'a [u8]) -> Result<Response<'a>, $err> {
                let (count, body) = $crate::response::decode_header::<$err>(msg)?;
                match op {
                    $( Op::$req => {
                        $crate::protocol!(@decode_response body, count, $err;
                            $($($rsf: $rst),*)? $($tf: $tt)?);
                        Ok(Response::$resp $({ $($rsf),* })? $(($tf))?)
                    } )*
                }
            }
        }

        /// The server side: one method per request, given the request's
        /// fields. `Self` carries whatever the call brings besides the
        /// message (caller, grant, the reply token) and is consumed, so a
        /// method either answers now or keeps the token to answer later;
        /// `Out` says which.
        pub trait Handler<'a>: Sized {
            /// What handling a request yields.
            type Out;
            $(
                $(#[$rq_meta])*
                fn $method(self $($(, $rqf: $rqt)*)? $(, $rtf: $rtt)?) -> Self::Out;
            )*
        }

        /// The client side: one stub per request. Each encodes the request,
        /// makes one call through the transport and decodes the answer
        /// into `reply`; it returns the response's fields (a tuple if
        /// several, `()` if none), borrowing `reply` for lists.
        #[derive(Clone, Copy, Debug)]
        pub struct Client<T>(pub T);

        impl<T: $crate::Transport> Client<T>
        where
            T::Error: From<$err>,
        {
            $(
                $(#[$rq_meta])*
                #[allow(unused_parens)] // `(T)` when the response has one field.
                pub fn $method<'a>(
                    &self,
                    reply: &'a mut [u8; $crate::MSG_MAX]
                    $($(, $rqf: $rqt)*)? $(, $rtf: $rtt)?
                ) -> Result<($($($rst),*)? $($tt)?), T::Error> {
                    let req = Request::$req $({ $($rqf),* })? $(($rtf))?;
                    let mut msg = [0u8; $crate::MSG_MAX];
                    let len = req.encode(&mut msg)?;
                    let sent = msg.get(..len).ok_or(<$err>::from($crate::Refused::Malformed))?;
                    let got = self.0.call(sent, reply)?;
                    let reply: &'a [u8; $crate::MSG_MAX] = reply;
                    let bytes = reply.get(..got).ok_or(<$err>::from($crate::Refused::Malformed))?;
                    match Response::decode(Op::$req, bytes)? {
                        Response::$resp $({ $($rsf),* })? $(($tf))? => {
                            Ok(($($($rsf),*)? $($tf)?))
                        }
                        #[allow(unreachable_patterns)]
                        _ => Err(<$err>::from($crate::Refused::Malformed).into()),
                    }
                }
            )*
        }
    };

    (@check $err:ty, []; $($f:ident),*) => {};
    (@check $err:ty, [$check:path]; $($f:ident),*) => {
        if !$check($(&$f),*) {
            return Err(<$err>::from($crate::Refused::Malformed).into());
        }
    };

    (@encode_request $buf:ident, $op:expr, $err:ty; $($f:ident : $t:ty),*) => {{
        let count = 0 $( + $crate::check_entries(
            <$t as $crate::RequestField<'a, $err>>::entries(&$f),
            <$t as $crate::RequestField<'a, $err>>::MIN,
            <$t as $crate::RequestField<'a, $err>>::MAX,
        )? )*;
        let bytes = 0 $( + <$t as $crate::RequestField<'a, $err>>::entries(&$f)
            * <$t as $crate::RequestField<'a, $err>>::ENTRY )*;
        #[allow(unused_mut)]
        let mut arg = 0u32;
        #[allow(unused_mut)]
        let mut _shift = 0u32;
        $(
            arg |= <$t as $crate::RequestField<'a, $err>>::arg(&$f)
                .checked_shl(_shift)
                .unwrap_or(0);
            _shift += <$t as $crate::RequestField<'a, $err>>::ARG_BITS;
        )*
        $crate::request::encode_with::<$err>($buf, $op, count, arg, bytes, |_body| {
            #[allow(unused_mut)]
            let mut _at = 0;
            $(
                let n = <$t as $crate::RequestField<'a, $err>>::entries(&$f)
                    * <$t as $crate::RequestField<'a, $err>>::ENTRY;
                let out = _body.get_mut(_at..).and_then(|b| b.get_mut(..n));
                <$t as $crate::RequestField<'a, $err>>::write(
                    &$f,
                    out.ok_or($crate::Refused::Malformed)?,
                )?;
                _at += n;
            )*
            Ok(())
        })
    }};

    (@decode_request $body:ident, $count:ident, $arg:ident, $err:ty; $($f:ident : $t:ty),*) => {
        let fixed = 0 $( + $crate::fixed_entries(
            <$t as $crate::RequestField<'a, $err>>::MIN,
            <$t as $crate::RequestField<'a, $err>>::MAX,
        ) )*;
        #[allow(unused_mut)]
        let mut cur = $crate::Cursor::new($body, $count, fixed, $arg)?;
        $(
            let $f = (
                cur.arg(<$t as $crate::RequestField<'a, $err>>::ARG_BITS),
                cur.take(
                    <$t as $crate::RequestField<'a, $err>>::ENTRY,
                    <$t as $crate::RequestField<'a, $err>>::MIN,
                    <$t as $crate::RequestField<'a, $err>>::MAX,
                )?,
            );
        )*
        cur.finish()?;
        $( let $f = <$t as $crate::RequestField<'a, $err>>::read($f.0, $f.1)?; )*
    };

    (@encode_response $buf:ident, $err:ty; $($f:ident : $t:ty),*) => {{
        let count = 0 $( + $crate::check_entries(
            <$t as $crate::ResponseField<'a, $err>>::entries(&$f),
            <$t as $crate::ResponseField<'a, $err>>::MIN,
            <$t as $crate::ResponseField<'a, $err>>::MAX,
        )? )*;
        let bytes = 0 $( + <$t as $crate::ResponseField<'a, $err>>::entries(&$f)
            * <$t as $crate::ResponseField<'a, $err>>::ENTRY )*;
        $crate::response::encode_with::<$err>($buf, count, bytes, |_body| {
            #[allow(unused_mut)]
            let mut _at = 0;
            $(
                let n = <$t as $crate::ResponseField<'a, $err>>::entries(&$f)
                    * <$t as $crate::ResponseField<'a, $err>>::ENTRY;
                let out = _body.get_mut(_at..).and_then(|b| b.get_mut(..n));
                <$t as $crate::ResponseField<'a, $err>>::write(
                    &$f,
                    out.ok_or($crate::Refused::Malformed)?,
                );
                _at += n;
            )*
            Ok(())
        })
    }};

    (@decode_response $body:ident, $count:ident, $err:ty; $($f:ident : $t:ty),*) => {
        let fixed = 0 $( + $crate::fixed_entries(
            <$t as $crate::ResponseField<'a, $err>>::MIN,
            <$t as $crate::ResponseField<'a, $err>>::MAX,
        ) )*;
        #[allow(unused_mut)]
        let mut cur = $crate::Cursor::new($body, $count, fixed, 0)?;
        $(
            let $f = cur.take(
                <$t as $crate::ResponseField<'a, $err>>::ENTRY,
                <$t as $crate::ResponseField<'a, $err>>::MIN,
                <$t as $crate::ResponseField<'a, $err>>::MAX,
            )?;
        )*
        cur.finish()?;
        $( let $f = <$t as $crate::ResponseField<'a, $err>>::read($f)?; )*
    };
}

/// A record of `u64` counters that travels as an array of little-endian
/// words, declared once: the struct (with `Clone, Copy, Debug, Default,
/// PartialEq, Eq, Hash`), `FIELDS`, `to_array` and `from_array`, all in
/// declaration order (which is the wire order: append, never reorder).
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident: u64, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: u64, )+
        }

        impl $name {
            /// Counters on the wire, in declaration order.
            pub const FIELDS: usize = [$(stringify!($field)),+].len();

            /// The counters in declaration (wire) order.
            pub fn to_array(self) -> [u64; Self::FIELDS] {
                [$(self.$field),+]
            }

            /// The inverse of [`Self::to_array`].
            pub fn from_array(a: [u64; Self::FIELDS]) -> Self {
                let [$($field),+] = a;
                Self { $($field),+ }
            }
        }
    };
}

/// The response field of a [`counters!`] record in protocol error `$err`'s
/// protocol, written once for all: `FIELDS` 8-byte little-endian entries
/// in declaration order; any other length is `Malformed` (`$err` converts
/// from [`Refused`](crate::Refused)).
#[macro_export]
macro_rules! counters_field {
    ($name:ty, $err:ty) => {
        impl $crate::ResponseField<'_, $err> for $name {
            const ENTRY: usize = 8;
            const MIN: usize = <$name>::FIELDS;
            const MAX: usize = <$name>::FIELDS;
            fn write(&self, out: &mut [u8]) {
                for (i, v) in self.to_array().iter().enumerate() {
                    $crate::wire::put(out, i * 8, &v.to_le_bytes());
                }
            }
            fn read(b: &[u8]) -> Result<Self, $err> {
                let malformed = || <$err>::from($crate::Refused::Malformed);
                if b.len() != <$name>::FIELDS * 8 {
                    return Err(malformed());
                }
                let mut a = [0u64; <$name>::FIELDS];
                for (i, v) in a.iter_mut().enumerate() {
                    *v = $crate::wire::u64_at(b, i * 8).ok_or_else(malformed)?;
                }
                Ok(<$name>::from_array(a))
            }
        }
    };
}

/// `From<Refused>` and [`WireError`](crate::WireError) for a protocol
/// error whose responses carry a `u16` status: `$err` is an
/// `abi::stable_codes!` enum over `u16` (`code`, `from_code`) with
/// `Malformed` and `UnknownOp` variants; a list too long is `Malformed`.
#[macro_export]
macro_rules! u16_wire_error {
    ($err:ident) => {
        impl From<$crate::Refused> for $err {
            fn from(r: $crate::Refused) -> Self {
                match r {
                    $crate::Refused::UnknownOp => $err::UnknownOp,
                    $crate::Refused::Malformed | $crate::Refused::TooMany => $err::Malformed,
                }
            }
        }

        /// Responses carry the status as a `u16`.
        impl $crate::WireError for $err {
            const STATUS_BYTES: usize = 2;
            fn wire_code(self) -> u32 {
                u32::from(self.code())
            }
            fn from_wire_code(code: u32) -> Option<Self> {
                u16::try_from(code).ok().and_then($err::from_code)
            }
        }
    };
}

/// A request's `u16` field in `$err`'s protocol: sixteen bits of the
/// header's `arg`, no entry, any value.
#[macro_export]
macro_rules! u16_arg_field {
    ($err:ident) => {
        impl $crate::RequestField<'_, $err> for u16 {
            const ENTRY: usize = 0;
            const ARG_BITS: u32 = 16;
            const MIN: usize = 0;
            const MAX: usize = 0;
            fn arg(&self) -> u32 {
                u32::from(*self)
            }
            fn write(&self, _out: &mut [u8]) -> Result<(), $err> {
                Ok(())
            }
            fn read(arg: u32, _b: &[u8]) -> Result<Self, $err> {
                u16::try_from(arg).map_err(|_| $err::Malformed)
            }
        }
    };
}
