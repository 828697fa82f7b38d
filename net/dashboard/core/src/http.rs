//! The HTTP/1.1 request parser (RFC 9112 §2–§5, a strict subset): the
//! request line, then header lines, then an empty line, all within
//! [`MAX_HEAD`] bytes. Only `GET` with no body is served.
//!
//! It must never panic, never allocate, and never accept a head over
//! [`MAX_HEAD`] bytes, a line that does not end in CRLF, a control
//! character, or a request that announces a body. A request is either
//! complete, incomplete (read more, unless the buffer is full), or bad
//! (answer with the status and close).

use crate::response::Status;

/// Most bytes of a request head (request line, headers and the empty line).
pub const MAX_HEAD: usize = 2048;
/// Most bytes of a request target.
pub const MAX_TARGET: usize = 256;
/// Most header lines.
pub const MAX_HEADERS: usize = 32;

/// A request the dashboard may answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The target's path (before any `?`).
    pub path: &'a str,
    /// Bytes of the head, the empty line included.
    pub head_len: usize,
}

/// What the bytes read so far are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// No end of head yet, and under [`MAX_HEAD`]: read more.
    Incomplete,
    /// A complete `GET` request.
    Get(Request<'a>),
    /// Answer with this status and close.
    Bad(Status),
}

/// Parses the start of what a peer sent. Bytes after the head are
/// ignored (a `GET` has no body; pipelining is not served).
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let Some(end) = find_head_end(window) else {
        if buf.len() >= MAX_HEAD {
            return Parsed::Bad(Status::BadRequest);
        }
        // Refuse early what can never become a valid head.
        return match early_check(window) {
            Ok(()) => Parsed::Incomplete,
            Err(s) => Parsed::Bad(s),
        };
    };
    let head = &window[..end];
    match parse_head(head) {
        Ok(path) => Parsed::Get(Request {
            path,
            head_len: end + 4,
        }),
        Err(s) => Parsed::Bad(s),
    }
}

/// Where `\r\n\r\n` starts.
fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Characters of an RFC 9110 `token` (method, header name).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// A partial head: no NUL or other control byte but CR, LF and HTAB, no
/// bare LF, and a request line that is still plausible.
fn early_check(b: &[u8]) -> Result<(), Status> {
    let mut prev = 0u8;
    for &c in b {
        if (c < 0x20 && c != b'\r' && c != b'\n' && c != b'\t') || c == 0x7f {
            return Err(Status::BadRequest);
        }
        if c == b'\n' && prev != b'\r' {
            return Err(Status::BadRequest);
        }
        if prev == b'\r' && c != b'\n' {
            return Err(Status::BadRequest);
        }
        prev = c;
    }
    // The method: token characters up to the first space.
    let method_end = b.iter().position(|&c| c == b' ').unwrap_or(b.len());
    if !b[..method_end].iter().all(|&c| is_tchar(c)) {
        return Err(Status::BadRequest);
    }
    Ok(())
}

/// The path of a valid `GET` head (without its final CRLFCRLF).
fn parse_head(head: &[u8]) -> Result<&str, Status> {
    let mut lines = CrlfLines(head);
    let first = lines.next().ok_or(Status::BadRequest)?;
    let path = request_line(first?)?;
    for (n, line) in lines.enumerate() {
        if n >= MAX_HEADERS {
            return Err(Status::BadRequest);
        }
        header(line?)?;
    }
    Ok(path)
}

/// The lines of a head split at CRLF; a line holding a bare CR or LF is
/// an error.
struct CrlfLines<'a>(&'a [u8]);

impl<'a> Iterator for CrlfLines<'a> {
    type Item = Result<&'a [u8], Status>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let (line, rest) = match self.0.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&self.0[..i], &self.0[i + 2..]),
            None => (self.0, &[][..]),
        };
        self.0 = rest;
        if line.iter().any(|&c| c == b'\r' || c == b'\n') {
            // Stop after an error.
            self.0 = &[];
            return Some(Err(Status::BadRequest));
        }
        Some(Ok(line))
    }
}

fn request_line(line: &[u8]) -> Result<&str, Status> {
    let mut parts = line.split(|&c| c == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if method.is_empty() || !method.iter().all(|&c| is_tchar(c)) {
        return Err(Status::BadRequest);
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(Status::BadRequest);
    }
    if target.is_empty()
        || target.len() > MAX_TARGET
        || target[0] != b'/'
        || !target.iter().all(|&c| (0x21..0x7f).contains(&c))
    {
        return Err(Status::BadRequest);
    }
    if method != b"GET" {
        return Err(Status::MethodNotAllowed);
    }
    let path = match target.iter().position(|&c| c == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    // Visible ASCII only: always UTF-8.
    core::str::from_utf8(path).map_err(|_| Status::BadRequest)
}

/// One `name: value` header line. A body is refused: `Content-Length`
/// other than 0, or any `Transfer-Encoding`.
fn header(line: &[u8]) -> Result<(), Status> {
    let colon = line
        .iter()
        .position(|&c| c == b':')
        .ok_or(Status::BadRequest)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
        return Err(Status::BadRequest);
    }
    // field-value: visible characters, SP, HTAB, obs-text.
    if !value
        .iter()
        .all(|&c| c == b' ' || c == b'\t' || (0x21..0x7f).contains(&c) || c >= 0x80)
    {
        return Err(Status::BadRequest);
    }
    let value = trim(value);
    if name.eq_ignore_ascii_case(b"transfer-encoding") {
        return Err(Status::BadRequest);
    }
    if name.eq_ignore_ascii_case(b"content-length") && value != b"0" {
        return Err(Status::BadRequest);
    }
    Ok(())
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let Some((&c, rest)) = v.split_first() {
        if c != b' ' && c != b'\t' {
            break;
        }
        v = rest;
    }
    while let Some((&c, rest)) = v.split_last() {
        if c != b' ' && c != b'\t' {
            break;
        }
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Parsed<'_> {
        Parsed::Get(Request { path, head_len: 0 })
    }

    fn strip(p: Parsed<'_>) -> Parsed<'_> {
        match p {
            Parsed::Get(r) => Parsed::Get(Request { head_len: 0, ..r }),
            other => other,
        }
    }

    #[test]
    fn a_plain_get_parses() {
        let r = b"GET /stats.json HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\n\r\n";
        assert_eq!(
            parse(r),
            Parsed::Get(Request {
                path: "/stats.json",
                head_len: r.len()
            })
        );
        assert_eq!(strip(parse(b"GET /?x=1 HTTP/1.0\r\n\r\n")), get("/"));
        assert_eq!(
            strip(parse(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\nrest")),
            get("/")
        );
    }

    #[test]
    fn partial_heads_are_incomplete() {
        for p in [
            &b""[..],
            b"G",
            b"GET / HTTP/1.1\r",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert_eq!(parse(p), Parsed::Incomplete, "{p:?}");
        }
    }

    #[test]
    fn malformed_heads_are_400() {
        for p in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/1.1 x\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty\r\n\r\n",
            b"GET / HTTP/1.1\r\nA\x01: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\nHost: x\n\n",
            b"G\x00",
            b"\x16\x03\x01",
            b"GET / HTTP/1.1\rX",
            b"GE(T / HTTP/1.1\r\n",
        ] {
            assert_eq!(parse(p), Parsed::Bad(Status::BadRequest), "{p:?}");
        }
    }

    #[test]
    fn other_methods_are_405() {
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\n\r\n"),
            Parsed::Bad(Status::MethodNotAllowed)
        );
    }

    #[test]
    fn oversized_heads_are_400() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&long), Parsed::Bad(Status::BadRequest));
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&long), Parsed::Bad(Status::BadRequest));
        // Exactly at the limit is fine.
        let mut fits = b"GET / HTTP/1.1\r\nX: ".to_vec();
        fits.resize(MAX_HEAD - 4, b'a');
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(strip(parse(&fits)), get("/"));
        let mut target = b"GET /".to_vec();
        target.resize(5 + MAX_TARGET, b'a');
        target.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&target), Parsed::Bad(Status::BadRequest));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Parsed::Bad(Status::BadRequest));
    }
}
