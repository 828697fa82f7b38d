//! The `protocol!` macro: from one declaration per request (op code,
//! request name and fields, handler/stub method name, response name and
//! fields, doc comments) it generates everything both sides need:
//!
//! - [`Op`](crate::Op) with `from_code` and `ALL`;
//! - [`Request`](crate::Request) and [`Response`](crate::Response) with
//!   `op()`, `encode` and the validating `decode`, laid out field by field
//!   through [`RequestField`](crate::RequestField) and
//!   [`ResponseField`](crate::ResponseField);
//! - the server side: [`Handler`](crate::Handler), one method per request,
//!   and [`Request::dispatch`](crate::Request::dispatch);
//! - the client side: [`Client`](crate::Client), one stub per request,
//!   over any [`Transport`](crate::Transport).
//!
//! It owns no layout of its own: field types do (`field.rs`), and the
//! headers live in `request.rs` and `response.rs`. Generated decoders
//! never panic and never allocate; nothing here may know what a request
//! means.

/// Declares the protocol. One entry per request:
///
/// ```text
/// /// docs (the op, the request, the handler and the stub)
/// CODE RequestName { field: Type, ... } => fn method_name
///     -> /// docs
///        ResponseName { field: Type, ... };
/// ```
///
/// Either side may be a unit variant (no braces); a response may instead be
/// a one-field tuple variant, `ResponseName(name: Type)`. Request field
/// types implement `RequestField<'a>`, response field types
/// `ResponseField<'a>`; `'a` is the message's lifetime.
macro_rules! protocol {
    ($(
        $(#[$rq_meta:meta])*
        $code:literal $req:ident
            $({ $( $(#[$rqf_meta:meta])* $rqf:ident : $rqt:ty ),* $(,)? })?
        => fn $method:ident
        -> $(#[$rs_meta:meta])*
            $resp:ident
            $({ $( $(#[$rsf_meta:meta])* $rsf:ident : $rst:ty ),* $(,)? })?
            $(( $tf:ident : $tt:ty ))?
        ;
    )*) => {
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
                $req $({ $( $(#[$rqf_meta])* $rqf: $rqt ),* })?,
            )*
        }

        impl<'a> Request<'a> {
            /// The request's op.
            pub const fn op(&self) -> Op {
                match self {
                    $( Request::$req { .. } => Op::$req, )*
                }
            }

            /// Encodes into `buf`, returning the message length. Refuses
            /// lists that are empty ([`ApiError::Malformed`]) or too long
            /// ([`ApiError::TooMany`]), and values the decoder would refuse
            /// ([`ApiError::Malformed`]).
            pub fn encode(&self, buf: &mut [u8; MSG_MAX]) -> Result<usize, ApiError> {
                match self {
                    $( Request::$req $({ $($rqf),* })? => {
                        let count = 0 $($( + check_entries(
                            RequestField::entries($rqf),
                            <$rqt as RequestField<'a>>::MIN,
                            <$rqt as RequestField<'a>>::MAX,
                        )? )*)?;
                        crate::request::encode_with(buf, Op::$req as u16, count, |_body| {
                            let mut _at = 0;
                            $($(
                                let n = RequestField::entries($rqf) * ENTRY_BYTES;
                                let out = _body.get_mut(_at..).and_then(|b| b.get_mut(..n));
                                RequestField::write($rqf, out.ok_or(ApiError::Malformed)?)?;
                                _at += n;
                            )*)?
                            Ok(())
                        })
                    } )*
                }
            }

            /// Decodes a request message.
            pub fn decode(msg: &'a [u8]) -> Result<Request<'a>, ApiError> {
                let (op, count, _body) = crate::request::decode_header(msg)?;
                match op {
                    $( Op::$req => {
                        let fixed = 0 $($( + fixed_entries(
                            <$rqt as RequestField<'a>>::MIN,
                            <$rqt as RequestField<'a>>::MAX,
                        ) )*)?;
                        let mut _cur = Cursor::new(_body, count, fixed)?;
                        $($(
                            let $rqf = <$rqt as RequestField<'a>>::read(_cur.take(
                                ENTRY_BYTES,
                                <$rqt as RequestField<'a>>::MIN,
                                <$rqt as RequestField<'a>>::MAX,
                            )?)?;
                        )*)?
                        _cur.finish()?;
                        Ok(Request::$req $({ $($rqf),* })?)
                    } )*
                }
            }

            /// Hands the request's fields to the handler's method for it.
            pub fn dispatch<H: Handler<'a>>(self, handler: H) -> H::Out {
                match self {
                    $( Request::$req $({ $($rqf),* })? => handler.$method($($($rqf),*)?), )*
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
        }

        impl<'a> Response<'a> {
            /// The op this response answers.
            pub const fn op(&self) -> Op {
                match self {
                    $( Response::$resp { .. } => Op::$req, )*
                }
            }

            /// Encodes a success response into `buf`, returning its length.
            /// Refuses too many entries ([`ApiError::TooMany`]) and too few
            /// ([`ApiError::Malformed`]).
            pub fn encode(&self, buf: &mut [u8; MSG_MAX]) -> Result<usize, ApiError> {
                match self {
                    $( Response::$resp $({ $($rsf),* })? $(($tf))? => {
                        protocol!(@encode_response buf; $($($rsf: $rst),*)? $($tf: $tt)?)
                    } )*
                }
            }

            /// Decodes the response to a request of kind `op`. A response
            /// carrying an error status decodes to `Err(that error)`; a
            /// message that is not a valid response to `op` to
            /// `Err(ApiError::Malformed)`.
            pub fn decode(op: Op, msg: &'a [u8]) -> Result<Response<'a>, ApiError> {
                let (count, _body) = crate::response::decode_header(msg)?;
                match op {
                    $( Op::$req => {
                        let fixed = 0 $($( + fixed_entries(
                            <$rst as ResponseField<'a>>::MIN,
                            <$rst as ResponseField<'a>>::MAX,
                        ) )*)? $( + fixed_entries(
                            <$tt as ResponseField<'a>>::MIN,
                            <$tt as ResponseField<'a>>::MAX,
                        ) )?;
                        let mut _cur = Cursor::new(_body, count, fixed)?;
                        $($(
                            let $rsf = protocol!(@read_response _cur; $rst);
                        )*)?
                        $( let $tf = protocol!(@read_response _cur; $tt); )?
                        _cur.finish()?;
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
                fn $method(self $($(, $rqf: $rqt)*)?) -> Self::Out;
            )*
        }

        /// How a [`Client`] reaches the server: one round trip.
        pub trait Transport {
            /// What a call can fail with (a refused request among others).
            type Error: From<ApiError>;
            /// Sends `msg`, receives the reply into `reply`; returns its
            /// length.
            fn call(&self, msg: &[u8], reply: &mut [u8; MSG_MAX]) -> Result<usize, Self::Error>;
        }

        /// The client side: one stub per request. Each encodes the request,
        /// makes one call through the transport and decodes the answer
        /// into `reply`; it returns the response's fields (a tuple if
        /// several, `()` if none), borrowing `reply` for lists.
        #[derive(Clone, Copy, Debug)]
        pub struct Client<T>(pub T);

        impl<T: Transport> Client<T> {
            $(
                $(#[$rq_meta])*
                #[allow(unused_parens)] // `(T)` when the response has one field.
                pub fn $method<'a>(
                    &self,
                    reply: &'a mut [u8; MSG_MAX]
                    $($(, $rqf: $rqt)*)?
                ) -> Result<($($($rst),*)? $($tt)?), T::Error> {
                    let req = Request::$req $({ $($rqf),* })?;
                    let mut msg = [0u8; MSG_MAX];
                    let len = req.encode(&mut msg)?;
                    let got = self.0.call(msg.get(..len).ok_or(ApiError::Malformed)?, reply)?;
                    let reply: &'a [u8; MSG_MAX] = reply;
                    let bytes = reply.get(..got).ok_or(ApiError::Malformed)?;
                    match Response::decode(Op::$req, bytes)? {
                        Response::$resp $({ $($rsf),* })? $(($tf))? => {
                            Ok(($($($rsf),*)? $($tf)?))
                        }
                        _ => Err(ApiError::Malformed.into()),
                    }
                }
            )*
        }
    };

    (@encode_response $buf:ident; $($f:ident : $t:ty),*) => {{
        let count = 0 $( + check_entries(
            ResponseField::entries($f),
            <$t as ResponseField<'a>>::MIN,
            <$t as ResponseField<'a>>::MAX,
        )? )*;
        let bytes = 0 $( + ResponseField::entries($f) * <$t as ResponseField<'a>>::ENTRY )*;
        crate::response::encode_with($buf, count, bytes, |_body| {
            let mut _at = 0;
            $(
                let n = ResponseField::entries($f) * <$t as ResponseField<'a>>::ENTRY;
                let out = _body.get_mut(_at..).and_then(|b| b.get_mut(..n));
                ResponseField::write($f, out.ok_or(ApiError::Malformed)?);
                _at += n;
            )*
            Ok(())
        })
    }};

    (@read_response $cur:ident; $t:ty) => {
        <$t as ResponseField<'a>>::read($cur.take(
            <$t as ResponseField<'a>>::ENTRY,
            <$t as ResponseField<'a>>::MIN,
            <$t as ResponseField<'a>>::MAX,
        )?)?
    };
}
