//! The IOMMU dashboard's logic, apart from the task that serves it: what
//! to answer for the bytes a peer sent. It owns the HTTP/1.1 request
//! parser ([`http`]: bounded head, `GET` only), the responses ([`response`]:
//! status line and headers), the two pages ([`render`]: `GET /`, an HTML
//! page that refreshes itself, and `GET /stats.json`) and the routing
//! between them ([`serve`]), and serving one connection ([`conn`]).
//!
//! It must never panic or allocate without bound on anything a peer
//! sends: a head longer than [`http::MAX_HEAD`] or malformed is a 400 and
//! the connection is closed; it never reads a body. It does no I/O and
//! reads no clock: the task hands it bytes and the figures.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod conn;
pub mod http;
pub mod render;
pub mod response;
pub mod serve;

pub use http::{MAX_HEAD, Parsed, Request};
pub use render::Snapshot;
pub use response::Status;
pub use serve::{Answer, answer};
