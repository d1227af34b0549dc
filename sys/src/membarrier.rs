//! `membarrier(2)`'s private expedited commands: the heavy half of an
//! asymmetric fence pair between threads of this process (a full barrier
//! on every CPU that runs one of them).
//!
//! Only the *private* commands are used. The global ones
//! (`MEMBARRIER_CMD_GLOBAL_EXPEDITED`) skip every CPU whose run queue was
//! not marked when the process registered, and the kernel (6.18 here)
//! never marks a CPU that held the process's memory map lazily at that
//! moment (an idle CPU that last ran one of its threads) until it runs
//! another process: measured, a global barrier took 141 ns and sent no
//! interrupt to a CPU spinning in a thread of the caller's process, where
//! the private one took 2.2 us. Wakeups were lost through that hole (see
//! `shmlane_semaphore`'s `barrier` module).

use std::io;

use rustix::thread::{membarrier, membarrier_query, MembarrierCommand, MembarrierQuery};

/// Whether the kernel offers `MEMBARRIER_CMD_PRIVATE_EXPEDITED` (false
/// where membarrier is missing or refused).
pub fn supports_private_expedited() -> bool {
    membarrier_query().contains(MembarrierQuery::PRIVATE_EXPEDITED)
}

/// Registers this process for private expedited barriers
/// (`MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`).
///
/// # Errors
///
/// The OS error (`EINVAL` where unsupported, `EPERM` under a filter).
pub fn register_private_expedited() -> io::Result<()> {
    Ok(membarrier(MembarrierCommand::RegisterPrivateExpedited)?)
}

/// Makes every CPU running a thread of this process execute a full memory
/// barrier (`MEMBARRIER_CMD_PRIVATE_EXPEDITED`), the caller's included.
///
/// # Errors
///
/// The OS error (`EPERM` before registering, `ENOMEM`...).
pub fn private_expedited() -> io::Result<()> {
    Ok(membarrier(MembarrierCommand::PrivateExpedited)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_processes_can_fence() {
        if supports_private_expedited() && register_private_expedited().is_ok() {
            private_expedited().unwrap();
        }
    }
}
