//! Per-client limits of the block service, and the accounting the driver
//! loop (`block-server`) keeps with them: how many of a client's I/Os are
//! on the device and how many completions wait for its `Reap`. A client
//! can grow the driver's memory only through these two numbers (its
//! completion queue holds at most `in_flight + unreaped` entries) and
//! through the table of clients, so both are bounded here: a `Submit` that
//! would take a client over [`Limits::per_client`], or a new client beyond
//! [`Limits::clients`], is refused with [`BlockError::Busy`] and changes
//! nothing. One client's backlog never counts against another.
//!
//! Pure arithmetic, no allocation: the loop sizes its per-client queue
//! once from `per_client` and never grows it.

use crate::BlockError;

/// The loop's bounds on what clients can make it hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most I/Os one client may have in flight plus completed but not
    /// reaped.
    pub per_client: u16,
    /// Most clients the loop keeps state for at once.
    pub clients: u16,
}

impl Limits {
    /// Default per-client limit: four times the default queue depth (64),
    /// so a client that keeps the whole queue busy (the benchmark at queue
    /// depth 64) reaps with room to spare.
    pub const DEFAULT_PER_CLIENT: u16 = 256;
    /// Default number of clients.
    pub const DEFAULT_CLIENTS: u16 = 64;
    /// Largest accepted per-client limit (a driver's queue depth is at most
    /// 1024; more buys nothing but memory).
    pub const MAX_PER_CLIENT: u16 = 4096;
    /// Largest accepted number of clients.
    pub const MAX_CLIENTS: u16 = 1024;

    /// Limits from a driver's task arguments, clamped to
    /// `1..=MAX_PER_CLIENT` and `1..=MAX_CLIENTS`.
    pub fn new(per_client: u64, clients: u64) -> Self {
        let clamp = |v: u64, max: u16| v.clamp(1, u64::from(max)) as u16;
        Self {
            per_client: clamp(per_client, Self::MAX_PER_CLIENT),
            clients: clamp(clients, Self::MAX_CLIENTS),
        }
    }

    /// Whether a client not yet known may be added to a table of `known`
    /// clients.
    pub fn admit_client(&self, known: usize) -> Result<(), BlockError> {
        if known < usize::from(self.clients) {
            Ok(())
        } else {
            Err(BlockError::Busy)
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_client: Self::DEFAULT_PER_CLIENT,
            clients: Self::DEFAULT_CLIENTS,
        }
    }
}

/// One client's I/Os as the loop counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    in_flight: u16,
    unreaped: u16,
}

impl Account {
    /// I/Os on the device (not yet reported).
    pub fn in_flight(&self) -> usize {
        usize::from(self.in_flight)
    }

    /// Completions waiting for a `Reap`.
    pub fn unreaped(&self) -> usize {
        usize::from(self.unreaped)
    }

    /// Whether `n` more I/Os fit under `limits`; changes nothing.
    pub fn admit(&self, n: usize, limits: &Limits) -> Result<(), BlockError> {
        let held = self.in_flight() + self.unreaped();
        match held.checked_add(n) {
            Some(total) if total <= usize::from(limits.per_client) => Ok(()),
            _ => Err(BlockError::Busy),
        }
    }

    /// `n` I/Os went on the device; `admit(n)` must have said yes.
    pub fn started(&mut self, n: usize, limits: &Limits) -> Result<(), BlockError> {
        self.admit(n, limits)?;
        // Fits in u16: admitted totals are at most `per_client`.
        self.in_flight += n as u16;
        Ok(())
    }

    /// One I/O left the device: its completion waits for a `Reap` if
    /// `queued` (a dead client's are dropped).
    pub fn completed(&mut self, queued: bool) {
        if self.in_flight > 0 {
            self.in_flight -= 1;
            if queued {
                self.unreaped += 1;
            }
        }
    }

    /// `n` completions were handed to the client (or dropped at its death).
    pub fn reaped(&mut self, n: usize) {
        self.unreaped = self
            .unreaped
            .saturating_sub(n.min(usize::from(u16::MAX)) as u16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_fits_the_benchmark() {
        let l = Limits::default();
        let mut a = Account::default();
        // The benchmark keeps 64 in flight and reaps as they come.
        assert_eq!(a.started(64, &l), Ok(()));
        for _ in 0..64 {
            a.completed(true);
        }
        assert_eq!(a.admit(64, &l), Ok(()));
    }

    #[test]
    fn limit_is_exact() {
        let l = Limits::new(20, 2);
        let mut a = Account::default();
        assert_eq!(a.started(10, &l), Ok(()));
        assert_eq!(a.started(10, &l), Ok(()));
        assert_eq!(a.admit(1, &l), Err(BlockError::Busy));
        a.completed(true);
        assert_eq!(a.admit(1, &l), Err(BlockError::Busy), "unreaped counts");
        a.reaped(1);
        assert_eq!(a.started(1, &l), Ok(()));
        assert_eq!(a.admit(usize::MAX, &l), Err(BlockError::Busy));
        assert_eq!(l.admit_client(1), Ok(()));
        assert_eq!(l.admit_client(2), Err(BlockError::Busy));
    }

    #[test]
    fn arguments_are_clamped() {
        assert_eq!(Limits::new(0, 0), Limits::new(1, 1));
        assert_eq!(
            Limits::new(u64::MAX, u64::MAX),
            Limits {
                per_client: Limits::MAX_PER_CLIENT,
                clients: Limits::MAX_CLIENTS
            }
        );
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// Client submits a batch of this many I/Os.
        Submit(usize, usize),
        /// The device completes one of the client's I/Os.
        Complete(usize),
        /// The client reaps up to this many.
        Reap(usize, usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..4usize, 1..=crate::MAX_IOS).prop_map(|(c, n)| Step::Submit(c, n)),
            (0..4usize).prop_map(Step::Complete),
            (0..4usize, 1..=crate::MAX_COMPLETIONS).prop_map(|(c, n)| Step::Reap(c, n)),
        ]
    }

    proptest! {
        /// Against a model of four clients: none ever holds more than its
        /// limit, a refused Submit changes nothing, and a Submit that fits
        /// its own client's limit is never refused whatever the others
        /// hold.
        #[test]
        fn clients_stay_within_their_limit(
            per_client in 1u64..40,
            steps in proptest::collection::vec(step(), 0..400),
        ) {
            let l = Limits::new(per_client, 4);
            let mut acc = [Account::default(); 4];
            // The model: (in flight, unreaped) per client.
            let mut model = [(0usize, 0usize); 4];
            for s in steps {
                match s {
                    Step::Submit(c, n) => {
                        let before = acc;
                        let fits = model[c].0 + model[c].1 + n <= per_client as usize;
                        let r = acc[c].started(n, &l);
                        prop_assert_eq!(r.is_ok(), fits);
                        if let Err(e) = r {
                            prop_assert_eq!(e, BlockError::Busy);
                            prop_assert_eq!(acc, before);
                        } else {
                            model[c].0 += n;
                            for (o, (a, b)) in acc.iter().zip(before.iter()).enumerate() {
                                if o != c {
                                    prop_assert_eq!(a, b);
                                }
                            }
                        }
                    }
                    Step::Complete(c) => {
                        acc[c].completed(true);
                        if model[c].0 > 0 {
                            model[c].0 -= 1;
                            model[c].1 += 1;
                        }
                    }
                    Step::Reap(c, n) => {
                        let k = n.min(model[c].1);
                        acc[c].reaped(k);
                        model[c].1 -= k;
                    }
                }
                for (a, m) in acc.iter().zip(model.iter()) {
                    prop_assert_eq!((a.in_flight(), a.unreaped()), *m);
                    prop_assert!(a.in_flight() + a.unreaped() <= per_client as usize);
                }
            }
        }
    }
}
