//! Responses, server to client: the typed [`Response`], its encoder, the
//! error encoder, and the validating decoder (which needs the op of the
//! request being answered, as the entry layout depends on it). Never
//! panics, never allocates.

use abi::{Iova, StreamId};

use crate::error::ApiError;
use crate::list::{FaultRecord, Iovas, List, WireEntry};
use crate::request::Op;
use crate::wire::{put, u16_at, u32_at, u64_at, zero};
use crate::{HEADER_BYTES, MAX_FAULT_RECORDS, MAX_MAP_ENTRIES, MSG_MAX};

/// A client's counters, as the `Stats` response carries them (ten
/// little-endian `u64`s in this order; `doorbells` and `server_ticks` were
/// appended after the first eight).
///
/// Consistency: every range a client unmapped is counted in `unmaps`
/// (bypass unmaps too, which need no invalidation); `syncs <= unmaps`,
/// since each sync counted covered at least one of its unmaps; and
/// `ResetStats` zeroes every counter but the two gauges
/// (`iova_bytes_in_use`, `pending_unmaps`), after completing the client's
/// pending unmaps so that none of them is counted on the far side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Map requests accepted.
    pub maps: u64,
    /// Unmapped ranges accepted.
    pub unmaps: u64,
    /// TLBI commands issued for this client's domain.
    pub tlbi_commands: u64,
    /// CMD_SYNCs this client's unmaps took part in.
    pub syncs: u64,
    /// Fault records attributed to this client (before coalescing).
    pub faults: u64,
    /// IOVA space held by live or not-yet-released mappings, in bytes.
    pub iova_bytes_in_use: u64,
    /// Unmaps accepted whose covering sync has not completed yet.
    pub pending_unmaps: u64,
    /// Longest deferred stale window (unmap to covering sync), in µs.
    pub max_stale_window_us: u64,
    /// Command-queue doorbells rung for batches this client's unmaps took
    /// part in: one per non-empty command batch plus one per CMD_SYNC
    /// (the server's hardware layer queues each CMD_SYNC behind its own
    /// doorbell). A doorbell shared by several clients counts for each.
    pub doorbells: u64,
    /// Counter ticks (`CNTVCT`, at the frequency `userlib::time` reports)
    /// the server spent on this client's requests, and its share of the
    /// flushes that covered its unmaps (see `Server::charge_flush`).
    pub server_ticks: u64,
}

impl Stats {
    const FIELDS: usize = 10;

    fn to_array(self) -> [u64; Self::FIELDS] {
        [
            self.maps,
            self.unmaps,
            self.tlbi_commands,
            self.syncs,
            self.faults,
            self.iova_bytes_in_use,
            self.pending_unmaps,
            self.max_stale_window_us,
            self.doorbells,
            self.server_ticks,
        ]
    }

    fn from_array(a: [u64; Self::FIELDS]) -> Self {
        let [
            maps,
            unmaps,
            tlbi_commands,
            syncs,
            faults,
            iova_bytes_in_use,
            pending_unmaps,
            max_stale_window_us,
            doorbells,
            server_ticks,
        ] = a;
        Self {
            maps,
            unmaps,
            tlbi_commands,
            syncs,
            faults,
            iova_bytes_in_use,
            pending_unmaps,
            max_stale_window_us,
            doorbells,
            server_ticks,
        }
    }
}

/// A successful response, server to client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// To `Attach`: the device's StreamID now translates in the caller's
    /// domain.
    Attached {
        /// The attached StreamID.
        sid: StreamId,
    },
    /// To `Map`: one IOVA per requested range, in order.
    Mapped {
        /// The IOVAs (page offset of each range kept).
        iovas: Iovas<'a>,
    },
    /// To `Unmap`. `faults_pending`: coalesced fault records waiting for
    /// this client's next `Faults` request (0 on the fast path). The
    /// devices complete a faulted transfer as if it succeeded, so a driver
    /// learns of the fault only here or from `Faults`.
    Unmapped {
        /// Fault records not yet drained.
        faults_pending: u32,
    },
    /// To `Flush`.
    Flushed,
    /// To `Stats`.
    Stats(Stats),
    /// To `Faults`: drained records, at most [`MAX_FAULT_RECORDS`].
    Faults {
        /// The records.
        records: List<'a, FaultRecord>,
    },
    /// To `SetPolicy`: the caller's unmaps now follow the new policy.
    PolicySet,
    /// To `ResetStats`: the caller's counters are zero.
    StatsReset,
}

fn header(buf: &mut [u8], status: u32, count: usize) {
    put(buf, 0, &status.to_le_bytes());
    put(buf, 4, &(count as u16).to_le_bytes());
    put(buf, 6, &[0, 0]);
}

impl<'a> Response<'a> {
    /// The op this response answers.
    pub const fn op(&self) -> Op {
        match self {
            Response::Attached { .. } => Op::Attach,
            Response::Mapped { .. } => Op::Map,
            Response::Unmapped { .. } => Op::Unmap,
            Response::Flushed => Op::Flush,
            Response::Stats(_) => Op::Stats,
            Response::Faults { .. } => Op::Faults,
            Response::PolicySet => Op::SetPolicy,
            Response::StatsReset => Op::ResetStats,
        }
    }

    /// Encodes a success response into `buf`, returning its length.
    /// Refuses too many IOVAs or records ([`ApiError::TooMany`]).
    pub fn encode(&self, buf: &mut [u8; MSG_MAX]) -> Result<usize, ApiError> {
        let body = &mut buf[HEADER_BYTES..];
        let (count, bytes) = match self {
            Response::Attached { sid } => {
                put(body, 0, &sid.0.to_le_bytes());
                put(body, 4, &[0; 4]);
                (1, 8)
            }
            Response::Mapped { iovas } => {
                let n = iovas.len();
                if n > MAX_MAP_ENTRIES {
                    return Err(ApiError::TooMany);
                }
                iovas.write_all(&mut body[..n * Iova::SIZE]);
                (n, n * Iova::SIZE)
            }
            Response::Unmapped { faults_pending } => {
                put(body, 0, &faults_pending.to_le_bytes());
                put(body, 4, &[0, 0, 0, 0]);
                (1, 8)
            }
            Response::Flushed | Response::PolicySet | Response::StatsReset => (0, 0),
            Response::Stats(s) => {
                for (i, v) in s.to_array().iter().enumerate() {
                    put(body, i * 8, &v.to_le_bytes());
                }
                (Stats::FIELDS, Stats::FIELDS * 8)
            }
            Response::Faults { records } => {
                let n = records.len();
                if n > MAX_FAULT_RECORDS {
                    return Err(ApiError::TooMany);
                }
                records.write_all(&mut body[..n * FaultRecord::SIZE]);
                (n, n * FaultRecord::SIZE)
            }
        };
        header(buf, 0, count);
        Ok(HEADER_BYTES + bytes)
    }

    /// Encodes an error response into `buf`, returning its length.
    pub fn encode_error(error: ApiError, buf: &mut [u8; MSG_MAX]) -> usize {
        header(buf, error.code(), 0);
        HEADER_BYTES
    }

    /// Decodes the response to a request of kind `op`. A response carrying
    /// an error status decodes to `Err(that error)`; a message that is not
    /// a valid response to `op` to `Err(ApiError::Malformed)`.
    pub fn decode(op: Op, msg: &'a [u8]) -> Result<Response<'a>, ApiError> {
        if msg.len() < HEADER_BYTES || msg.len() > MSG_MAX || !zero(msg, 6, 8) {
            return Err(ApiError::Malformed);
        }
        let (Some(status), Some(count)) = (u32_at(msg, 0), u16_at(msg, 4)) else {
            return Err(ApiError::Malformed);
        };
        let count = usize::from(count);
        let body = &msg[HEADER_BYTES..];
        if status != 0 {
            let e = ApiError::from_code(status).ok_or(ApiError::Malformed)?;
            return if count == 0 && body.is_empty() {
                Err(e)
            } else {
                Err(ApiError::Malformed)
            };
        }
        match op {
            Op::Attach => match u32_at(body, 0) {
                Some(sid) if count == 1 && body.len() == 8 && zero(body, 4, 8) => {
                    Ok(Response::Attached { sid: StreamId(sid) })
                }
                _ => Err(ApiError::Malformed),
            },
            Op::Map => {
                if !(1..=MAX_MAP_ENTRIES).contains(&count) {
                    return Err(ApiError::Malformed);
                }
                Ok(Response::Mapped {
                    iovas: List::from_wire(body, count)?,
                })
            }
            Op::Unmap => match u32_at(body, 0) {
                Some(faults_pending) if count == 1 && body.len() == 8 && zero(body, 4, 8) => {
                    Ok(Response::Unmapped { faults_pending })
                }
                _ => Err(ApiError::Malformed),
            },
            Op::Flush | Op::SetPolicy | Op::ResetStats => {
                if count != 0 || !body.is_empty() {
                    return Err(ApiError::Malformed);
                }
                Ok(match op {
                    Op::Flush => Response::Flushed,
                    Op::SetPolicy => Response::PolicySet,
                    _ => Response::StatsReset,
                })
            }
            Op::Stats => {
                if count != Stats::FIELDS || body.len() != Stats::FIELDS * 8 {
                    return Err(ApiError::Malformed);
                }
                let mut a = [0u64; Stats::FIELDS];
                for (i, v) in a.iter_mut().enumerate() {
                    *v = u64_at(body, i * 8).ok_or(ApiError::Malformed)?;
                }
                Ok(Response::Stats(Stats::from_array(a)))
            }
            Op::Faults => {
                if count > MAX_FAULT_RECORDS {
                    return Err(ApiError::Malformed);
                }
                Ok(Response::Faults {
                    records: List::from_wire(body, count)?,
                })
            }
        }
    }
}
