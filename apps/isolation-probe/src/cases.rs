//! One tally of expected outcomes per role: each case logs one line and
//! the role ends with a summary line and its exit code.

use userlib::{Error, SysResult, log};

/// The cases of one role run so far.
pub struct Cases {
    role: &'static str,
    total: u32,
    wrong: u32,
}

impl Cases {
    /// An empty tally whose lines start with `role`.
    pub fn new(role: &'static str) -> Cases {
        Cases {
            role,
            total: 0,
            wrong: 0,
        }
    }

    /// A case that the kernel must refuse with exactly `expected`.
    pub fn refused<T>(&mut self, name: &str, result: SysResult<T>, expected: Error) {
        let role = self.role;
        self.total += 1;
        match result {
            Err(e) if e == expected => {
                log!("{role}: {name}: refused with {e} (expected {expected})");
            }
            Err(e) => {
                self.wrong += 1;
                log!("{role}: {name}: UNEXPECTED refused with {e} (expected {expected})");
            }
            Ok(_) => {
                self.wrong += 1;
                log!("{role}: {name}: UNEXPECTED success (expected {expected})");
            }
        }
    }

    /// A positive control: the kernel must allow it. Returns its value.
    pub fn allowed<T>(&mut self, name: &str, result: SysResult<T>) -> Option<T> {
        let role = self.role;
        self.total += 1;
        match result {
            Ok(v) => {
                log!("{role}: {name}: ok (expected ok)");
                Some(v)
            }
            Err(e) => {
                self.wrong += 1;
                log!("{role}: {name}: UNEXPECTED refused with {e} (expected ok)");
                None
            }
        }
    }

    /// A check of a value the case read.
    pub fn value(&mut self, name: &str, got: u64, expected: u64) {
        let role = self.role;
        self.total += 1;
        if got == expected {
            log!("{role}: {name}: {got:#x} (expected {expected:#x})");
        } else {
            self.wrong += 1;
            log!("{role}: {name}: UNEXPECTED {got:#x} (expected {expected:#x})");
        }
    }

    /// A case that could not even be set up (counts as wrong).
    pub fn broken(&mut self, name: &str, why: &str) {
        self.total += 1;
        self.wrong += 1;
        log!("{}: {name}: UNEXPECTED {why}", self.role);
    }

    /// Logs the summary line; returns the exit code (0 if all as expected).
    pub fn finish(&self) -> i32 {
        let (role, total, wrong) = (self.role, self.total, self.wrong);
        if wrong == 0 {
            log!("{role}: all {total} refused as expected");
            0
        } else {
            log!("{role}: {wrong} of {total} cases wrong");
            1
        }
    }
}
