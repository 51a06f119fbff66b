//! The session table shared by every connection, request and the sweeper. Each critical section
//! is one or a few `SessionTable` calls made inside [`SessionHandle::with`]; in debug builds the
//! table's invariants are checked as the lock is released, so a sequence of calls that breaks
//! them is caught at the call site that did it.

use crate::session::{SessionLimits, SessionTable};
use crate::sync::{Mutex, MutexGuard};

/// A thread-safe [`SessionTable`].
#[derive(Debug)]
pub struct SessionHandle {
    table: Mutex<SessionTable>,
}

impl SessionHandle {
    /// An empty table with `limits`.
    pub fn new(limits: SessionLimits) -> Self {
        Self { table: Mutex::new(SessionTable::new(limits)) }
    }

    fn lock(&self) -> MutexGuard<'_, SessionTable> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` with exclusive access to the table. Keep `f` short and free of IO: it holds the
    /// lock every connection needs.
    pub fn with<R>(&self, f: impl FnOnce(&mut SessionTable) -> R) -> R {
        let mut table = self.lock();
        let result = f(&mut table);
        debug_assert_eq!(table.check_invariants(), Ok(()), "session table invariants");
        result
    }
}
