//! `membarrier(2)`'s global expedited commands: the heavy half of an
//! asymmetric fence pair (a full barrier on every CPU that runs a
//! registered process).

use std::io;

use rustix::thread::{membarrier, membarrier_query, MembarrierCommand, MembarrierQuery};

/// Whether the kernel offers `MEMBARRIER_CMD_GLOBAL_EXPEDITED` (false
/// where membarrier is missing or refused).
pub fn supports_global_expedited() -> bool {
    membarrier_query().contains(MembarrierQuery::GLOBAL_EXPEDITED)
}

/// Registers this process for global expedited barriers
/// (`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`).
///
/// # Errors
///
/// The OS error (`EINVAL` where unsupported, `EPERM` under a filter).
pub fn register_global_expedited() -> io::Result<()> {
    Ok(membarrier(MembarrierCommand::RegisterGlobalExpedited)?)
}

/// Makes every CPU running a registered process execute a full memory
/// barrier (`MEMBARRIER_CMD_GLOBAL_EXPEDITED`).
///
/// # Errors
///
/// The OS error (`ENOMEM`, `EPERM`...).
pub fn global_expedited() -> io::Result<()> {
    Ok(membarrier(MembarrierCommand::GlobalExpedited)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_processes_can_fence() {
        if supports_global_expedited() && register_global_expedited().is_ok() {
            global_expedited().unwrap();
        }
    }
}
