//! HTTP/1.1 responses as the dashboard sends them: a status line, the
//! headers every answer carries (`Content-Type`, `Content-Length`,
//! `Connection: close`, `Cache-Control: no-store`), then the body. One
//! request per connection: the dashboard always closes after answering.
//!
//! It must never emit a header built from peer input (nothing a peer sent
//! is echoed).

use alloc::vec::Vec;
use core::fmt::Write;

/// The statuses the dashboard answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200: a page.
    Ok,
    /// 400: malformed or oversized (the connection is closed).
    BadRequest,
    /// 404: a path the dashboard does not serve.
    NotFound,
    /// 405: a method other than `GET`.
    MethodNotAllowed,
    /// 408: the request did not arrive in time.
    RequestTimeout,
    /// 503: the IOMMU server did not answer the stats request.
    Unavailable,
}

impl Status {
    /// The numeric code.
    pub const fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::BadRequest => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::Unavailable => 503,
        }
    }

    /// The reason phrase.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::BadRequest => "Bad Request",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::RequestTimeout => "Request Timeout",
            Self::Unavailable => "Service Unavailable",
        }
    }
}

/// Content types the dashboard sends.
pub mod content_type {
    /// The page.
    pub const HTML: &str = "text/html; charset=utf-8";
    /// `/stats.json`.
    pub const JSON: &str = "application/json";
    /// Error bodies.
    pub const TEXT: &str = "text/plain; charset=utf-8";
}

/// A whole response: head and body.
pub fn build(status: Status, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut head = alloc::string::String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        status.code(),
        status.reason(),
        content_type,
        body.len()
    );
    if status == Status::MethodNotAllowed {
        head.push_str("Allow: GET\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// An error answer: the status line as a short text body.
pub fn error(status: Status) -> Vec<u8> {
    let mut body = alloc::string::String::new();
    let _ = writeln!(body, "{} {}", status.code(), status.reason());
    build(status, content_type::TEXT, body.as_bytes())
}
