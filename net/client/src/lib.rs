//! The socket service's client side: what a task calls to talk TCP
//! through the network-stack task. Its methods wrap the stubs `sock-api`
//! generates (encode, one call, decode) over `userlib::ipc::Call`, with
//! the grant each request needs: payload goes through one DMA buffer of
//! the client's own ([`Tcp::buffer`]), granted with every `send` and
//! `recv`, which the stack copies out of or into. Never touches a device,
//! never sees another task's memory.
#![no_std]
#![forbid(unsafe_code)]

use sock_api::{Client, MAX_TRANSFER, MSG_MAX, SockError, Socket, StackStats, Wait};
use userlib::DmaBuffer;
use userlib::ipc::Call;

/// What a socket call can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The kernel refused the call (the stack is gone, a bad capability).
    Sys(abi::Error),
    /// The stack refused the request.
    Sock(SockError),
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::Sys(e) => write!(f, "kernel: {e}"),
            ClientError::Sock(e) => write!(f, "stack: {e}"),
        }
    }
}

impl From<abi::Error> for ClientError {
    fn from(e: abi::Error) -> Self {
        ClientError::Sys(e)
    }
}

impl From<SockError> for ClientError {
    fn from(e: SockError) -> Self {
        ClientError::Sock(e)
    }
}

/// The socket service behind the call capability `cap`, with this task's
/// transfer buffer.
pub struct Tcp {
    cap: u32,
    buf: DmaBuffer,
}

impl Tcp {
    /// The stack behind `cap`, with a transfer buffer of `bytes` (rounded
    /// up to pages, at most [`MAX_TRANSFER`]).
    pub fn new(cap: u32, bytes: u32) -> Result<Tcp, ClientError> {
        let bytes = bytes.clamp(1, MAX_TRANSFER);
        let buf = DmaBuffer::alloc(u64::from(bytes).div_ceil(4096))?;
        Ok(Tcp { cap, buf })
    }

    fn plain(&self) -> Client<Call<ClientError>> {
        Client(Call::new(self.cap, None, None))
    }

    fn granted(&self) -> Client<Call<ClientError>> {
        Client(Call::new(self.cap, Some(self.buf.grant()), None))
    }

    /// Bytes one transfer moves at most.
    pub fn room(&self) -> usize {
        (self.buf.len() as usize).min(MAX_TRANSFER as usize)
    }

    /// Listens on `port`.
    pub fn listen(&self, port: u16, backlog: u16) -> Result<Socket, ClientError> {
        self.plain().listen(&mut [0; MSG_MAX], port, backlog)
    }

    /// Waits for a connection on `listener`.
    pub fn accept(&self, listener: Socket) -> Result<Socket, ClientError> {
        self.plain().accept(&mut [0; MSG_MAX], listener)
    }

    /// Sends as much of `data` as the stack takes in one call (at least
    /// one byte, waiting for room); returns how much.
    pub fn send(&mut self, s: Socket, data: &[u8]) -> Result<usize, ClientError> {
        let n = data.len().min(self.room());
        if n == 0 {
            return Ok(0);
        }
        self.buf
            .copy_in(0, &data[..n])
            .ok_or(ClientError::Sys(abi::Error::BadAddress))?;
        let sent = self.granted().send(&mut [0; MSG_MAX], s, n as u32)?;
        Ok(sent as usize)
    }

    /// Sends all of `data`.
    pub fn send_all(&mut self, s: Socket, mut data: &[u8]) -> Result<(), ClientError> {
        while !data.is_empty() {
            let n = self.send(s, data)?;
            data = &data[n.min(data.len())..];
        }
        Ok(())
    }

    /// Waits for data and copies at most `out.len()` bytes into `out`;
    /// 0 means the peer closed.
    pub fn recv(&mut self, s: Socket, out: &mut [u8]) -> Result<usize, ClientError> {
        self.recv_within(s, out, Wait::FOREVER)
    }

    /// [`Tcp::recv`], giving up after `wait` with
    /// `ClientError::Sock(SockError::TimedOut)`.
    pub fn recv_within(
        &mut self,
        s: Socket,
        out: &mut [u8],
        wait: Wait,
    ) -> Result<usize, ClientError> {
        let max = out.len().min(self.room());
        if max == 0 {
            return Ok(0);
        }
        let n = self
            .granted()
            .recv(&mut [0; MSG_MAX], s, max as u32, wait)? as usize;
        let n = n.min(max);
        self.buf
            .copy_out(0, &mut out[..n])
            .ok_or(ClientError::Sys(abi::Error::BadAddress))?;
        Ok(n)
    }

    /// Waits for data and counts it without copying it out of the
    /// transfer buffer (a sink); 0 means the peer closed.
    pub fn discard(&mut self, s: Socket, max: usize) -> Result<usize, ClientError> {
        let max = max.min(self.room());
        if max == 0 {
            return Ok(0);
        }
        Ok(self
            .granted()
            .recv(&mut [0; MSG_MAX], s, max as u32, Wait::FOREVER)? as usize)
    }

    /// Sends `n` bytes of whatever the transfer buffer holds (a source).
    pub fn send_buffer(&mut self, s: Socket, n: usize) -> Result<usize, ClientError> {
        let n = n.min(self.room());
        if n == 0 {
            return Ok(0);
        }
        Ok(self.granted().send(&mut [0; MSG_MAX], s, n as u32)? as usize)
    }

    /// Closes `s`.
    pub fn close(&self, s: Socket) -> Result<(), ClientError> {
        self.plain().close(&mut [0; MSG_MAX], s)
    }

    /// The stack's counters.
    pub fn stats(&self) -> Result<StackStats, ClientError> {
        self.plain().stats(&mut [0; MSG_MAX])
    }
}
