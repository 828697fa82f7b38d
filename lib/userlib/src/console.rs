//! Console output: [`log`] sends one line to the kernel, which prefixes the
//! task's name; [`log!`](crate::log!) formats into a stack buffer first.
//! Formatting never allocates and never panics: a line longer than
//! [`LOG_MAX`] bytes is cut at a character boundary.

use core::fmt;

use abi::syscall::LOG_MAX;
use abi::{SysResult, Sysno};

use crate::raw::check;
use crate::sys::syscall;

/// Writes `line` to the console (at most [`LOG_MAX`] bytes, else
/// `TooLarge`).
pub fn log(line: &str) -> SysResult<()> {
    let ptr = if line.is_empty() {
        0
    } else {
        line.as_ptr() as u64
    };
    check(syscall(
        Sysno::Log as u64,
        [ptr, line.len() as u64, 0, 0, 0, 0],
    ))
    .map(|_| ())
}

/// A line being formatted: keeps the first [`LOG_MAX`] bytes.
struct LineBuf {
    buf: [u8; LOG_MAX],
    len: usize,
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LOG_MAX - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        // Never an error: a failing `write!` would end formatting, and
        // a `Display` impl may treat an error as a bug.
        Ok(())
    }
}

/// Formats `args` (cut to [`LOG_MAX`] bytes) and logs it. Used by
/// [`log!`](crate::log!); a failure to log cannot be reported anywhere, so
/// it is dropped.
pub fn log_fmt(args: fmt::Arguments<'_>) {
    let mut line = LineBuf {
        buf: [0; LOG_MAX],
        len: 0,
    };
    let _ = fmt::write(&mut line, args);
    let bytes = &line.buf[..line.len];
    let text = match core::str::from_utf8(bytes) {
        Ok(text) => text,
        // The cut fell inside a character: drop its first bytes.
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    };
    let _ = log(text);
}

/// `log!("fmt", args...)`: formats like `format!` into a stack buffer of
/// [`LOG_MAX`] bytes (truncating) and writes the line to the console.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::console::log_fmt(::core::format_args!($($arg)*))
    };
}
