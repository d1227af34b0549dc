//! System V segments (`sysv:KEY`): the same header, ring and validation
//! as the others, in a segment made by `shmget` and attached by `shmat`.
//!
//! A System V segment has no file, so its liveness flags are semaphores
//! changed with `SEM_UNDO` (the kernel puts them back when a process
//! exits, `SIGKILL` included) in a private set whose id the creator writes
//! into the header before anything else:
//!
//! | semaphore | what |
//! |---|---|
//! | 0 | the creator (the file backends' `CREATOR_LOCK`) |
//! | 1 to 32 | participant slot 0 to 31 |
//! | [`ATTACHED`] | how many processes' `Segment`s hold it open (not read-only ones) |
//! | [`MARK`] | [`MARK_VALUE`]: the set is a shmlane segment's |
//! | [`KEEP`] | 1 when the segment outlives its last user |
//! | [`LOCK`] | held (with undo) around an opener's count and a leaver's last-user check |
//!
//! The header stores the set's id plus one, so that 0 means "not written
//! yet" (the kernel hands out id 0 too).
//! Creation is not atomic as a rename is: the key names the segment from
//! `shmget` on, zero-filled, and openers wait for READY as they do for a
//! file (the creator's semaphore, or while the set is not written yet the
//! creator's pid, tells them whether to wait). The last `Segment` dropped
//! removes the segment (`IPC_RMID`) and the set, unless it was created
//! with `keep`. A segment cannot be resized or truncated by anyone and
//! `IPC_RMID` leaves attachments in place, so nothing a peer does makes
//! an access fault: no SIGBUS to contain.
//!
//! The undo semaphores belong to the process, not to a descriptor: a
//! forked child holds none of its parent's (and its copy of a `Segment`
//! does nothing when dropped), and a process that `exec`s keeps its own
//! until it exits, though its attachment is gone. A program that creates
//! or opens a segment and then daemonizes (forks, and the parent exits)
//! leaves the child unseen: its peers take it for dead. Open the segment
//! after daemonizing.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmlane_ring::RingLayout;

use super::create::fixed_of;
use super::open::{access, check_wanted, read_header};
use super::{
    Backend, CreateOptions, Liveness, Memory, OpenOptions, Segment, Spec, SysvKey, CREATOR_LOCK,
};
use crate::error::{CreateError, OpenError};
use crate::header::{
    Header, HEADER_LEN, LOCK_BASE, MAGIC, MAX_PARTICIPANTS, STATE_INIT, STATE_READY,
};
use crate::sys;
use crate::sys::errno::Errno;
use crate::sys::sysv::{self as ipc, SemOp};
use crate::sys::Access;

/// Semaphore counting the processes that hold the segment open.
pub const ATTACHED: u16 = 1 + MAX_PARTICIPANTS as u16;
/// Semaphore holding [`MARK_VALUE`].
pub const MARK: u16 = ATTACHED + 1;
/// Semaphore that is 1 when the segment is kept after its last user.
pub const KEEP: u16 = MARK + 1;
/// Semaphore held (with undo) while an opener counts itself in or a
/// leaver decides whether it is the last user.
pub const LOCK: u16 = KEEP + 1;
/// Semaphores in a segment's set.
pub const SEMS: u16 = LOCK + 1;
/// The longest an opener or a leaver waits for [`LOCK`] (held for a few
/// system calls at a time; the kernel gives it back if its holder dies).
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// The value of [`MARK`] in a shmlane segment's set ("SS").
pub const MARK_VALUE: i32 = 0x5353;

/// A System V segment's semaphore set, as its liveness flags.
#[derive(Debug)]
pub(super) struct Sems(pub(super) i32);

/// The semaphore of lock `offset` (`CREATOR_LOCK` or a `lock_offset`).
fn sem_of(offset: u64) -> u16 {
    (offset - LOCK_BASE) as u16
}

impl Sems {
    pub(super) fn try_take(&self, offset: u64) -> io::Result<bool> {
        let n = sem_of(offset);
        // Atomically: wait for zero (not at all), then raise it with undo.
        ipc::sem_op(
            self.0,
            &[SemOp::keep(n, 0), SemOp::undo(n, 1)],
            Some(Duration::ZERO),
        )
    }

    pub(super) fn release(&self, offset: u64) -> io::Result<()> {
        ipc::sem_op(
            self.0,
            &[SemOp::undo(sem_of(offset), -1)],
            Some(Duration::ZERO),
        )
        .map(drop)
    }

    pub(super) fn is_held_or_unknown(&self, offset: u64) -> bool {
        ipc::sem_value(self.0, sem_of(offset)).map_or(true, |v| v > 0)
    }
}

fn create_err(key: &SysvKey, needed: u64, e: io::Error) -> CreateError {
    match Errno::from_io_error(&e) {
        Some(Errno::EXIST) => CreateError::AlreadyExists(format!("sysv:{key}")),
        Some(Errno::ACCESS | Errno::PERM) => CreateError::PermissionDenied(format!("sysv:{key}")),
        // EINVAL: over shmmax (or under shmmin, which is 1).
        Some(Errno::INVAL) => CreateError::SysvLimit {
            needed,
            limit: ipc::limit("shmmax").unwrap_or(0),
            sysctl: "kernel.shmmax",
        },
        Some(Errno::NOSPC) => {
            let pages = ipc::limit("shmall").unwrap_or(0);
            let count = ipc::table(ipc::Table::Shm).map_or(0, |t| t.len() as u64);
            if ipc::limit("shmmni").is_some_and(|m| count >= m) {
                CreateError::SysvLimit {
                    needed,
                    limit: 0,
                    sysctl: "kernel.shmmni",
                }
            } else {
                CreateError::SysvLimit {
                    needed,
                    limit: pages.saturating_mul(4096),
                    sysctl: "kernel.shmall",
                }
            }
        }
        _ => CreateError::Os(e),
    }
}

/// Removes what a failed creation made, unless kept.
struct Undo {
    shm: Option<i32>,
    sems: Option<i32>,
}

impl Undo {
    fn keep(mut self) {
        self.shm = None;
        self.sems = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(id) = self.shm {
            let _ = ipc::shm_remove(id);
        }
        if let Some(id) = self.sems {
            let _ = ipc::sem_remove(id);
        }
    }
}

impl Segment {
    /// Creates a System V segment under `key`: `shmget(IPC_CREAT |
    /// IPC_EXCL)` with `opts.mode`, then its semaphore set, the header and
    /// the ring; see the [module docs](self).
    pub(super) fn create_sysv(
        key: &SysvKey,
        spec: &Spec,
        layout: RingLayout,
        total: usize,
        opts: &CreateOptions,
    ) -> Result<Self, CreateError> {
        let needed = total as u64;
        if let Some(max) = ipc::limit("shmmax") {
            if needed > max {
                return Err(CreateError::SysvLimit {
                    needed,
                    limit: max,
                    sysctl: "kernel.shmmax",
                });
            }
        }
        let k = key.resolve().map_err(CreateError::Os)?;
        let id = ipc::shm_create(k, total, opts.mode).map_err(|e| create_err(key, needed, e))?;
        let mut undo = Undo {
            shm: Some(id),
            sems: None,
        };
        crate::fault::point("create.after_open");
        let att = ipc::Attachment::new(id, total, Access::ReadWrite).map_err(CreateError::Os)?;
        let sems = ipc::sem_create(ipc::PRIVATE, SEMS, opts.mode).map_err(CreateError::Os)?;
        undo.sems = Some(sems);
        let live = Sems(sems);
        // Held until this segment is dropped, as the file backends' creator
        // lock: openers tell "still initialising" from "died" by it.
        if !live.try_take(CREATOR_LOCK).map_err(CreateError::Os)? {
            return Err(CreateError::Os(io::Error::other(
                "creator semaphore already held",
            )));
        }
        ipc::sem_op(sems, &[SemOp::undo(ATTACHED, 1)], Some(Duration::ZERO))
            .map_err(CreateError::Os)?;
        ipc::sem_set_value(sems, KEEP, i32::from(opts.keep)).map_err(CreateError::Os)?;
        ipc::sem_set_value(sems, MARK, MARK_VALUE).map_err(CreateError::Os)?;
        let fixed = fixed_of(spec, &layout, total);
        let seg = Self {
            live: Liveness::Sysv(live),
            map: Memory::sysv(att),
            broken: AtomicBool::new(false),
            backend: Backend::Sysv { key: k, id },
            fixed,
            layout,
            schema: spec.ty.schema.clone(),
            // For a System V segment: this handle created it and holds the
            // creator's semaphore (the last user removes it; see KEEP).
            unlink_on_drop: true,
            read_only: false,
            held: Mutex::new(0),
            pid: sys::process::pid(),
        };
        // First: openers that find the segment INIT check the creator
        // through it (id + 1: 0 is "not written").
        seg.header().sysv_sems.write(sems + 1);
        let schema = spec.ty.schema.as_bytes();
        // SAFETY: the text fits between `schema_offset` and the end of the
        // `total`-byte attachment (fixed_of computed both), no reference
        // into it exists, and the source is process memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                schema.as_ptr(),
                seg.map.as_ptr().add(fixed.schema_offset as usize),
                schema.len(),
            );
        }
        crate::fault::point("create.after_reserve");
        seg.publish()?;
        undo.keep();
        Ok(seg)
    }

    /// Opens the System V segment under `key`: checks its owner and mode
    /// as a file's, attaches it, waits for READY, validates the header
    /// and the semaphore set.
    pub(super) fn open_sysv(key: &SysvKey, opts: &OpenOptions) -> Result<Self, OpenError> {
        let name = format!("sysv:{key}");
        let k = key.resolve().map_err(OpenError::Os)?;
        let id = ipc::shm_get(k).map_err(|e| match Errno::from_io_error(&e) {
            Some(Errno::NOENT) => OpenError::NotFound(name.clone()),
            Some(Errno::ACCESS | Errno::PERM) => OpenError::PermissionDenied(name.clone()),
            _ => OpenError::Os(e),
        })?;
        let gone = |e: io::Error| match Errno::from_io_error(&e) {
            Some(Errno::INVAL | Errno::IDRM) => OpenError::NotFound(name.clone()),
            Some(Errno::ACCESS | Errno::PERM) => OpenError::PermissionDenied(name.clone()),
            _ => OpenError::Os(e),
        };
        let st = ipc::shm_stat(id).map_err(gone)?;
        let expected = opts.owner.unwrap_or_else(sys::process::euid);
        if st.perm.uid != expected {
            return Err(OpenError::WrongOwner {
                expected,
                found: st.perm.uid,
            });
        }
        let mode = st.perm.mode & 0o777;
        if mode & 0o022 != 0 && !opts.allow_group_write {
            return Err(OpenError::InsecureMode { mode });
        }
        if st.size < HEADER_LEN as u64 {
            return Err(OpenError::TooSmall { len: st.size });
        }
        let len = usize::try_from(st.size).map_err(|_| OpenError::LayoutMismatch {
            field: "segment size",
            detail: st.size.to_string(),
        })?;
        let att = ipc::Attachment::new(id, len, access(opts)).map_err(gone)?;
        // SAFETY: the attachment holds at least HEADER_LEN bytes (checked
        // above), page-aligned, for as long as `att`; `Header` holds only
        // atomics and `Shared` cells, valid for any bytes.
        let header = unsafe { &*att.as_ptr().cast::<Header>() };
        wait_ready(header, st.creator_pid, opts.ready_timeout)?;
        let (fixed, layout) = read_header(header, st.size)?;
        let sems = header.sysv_sems.read().wrapping_sub(1);
        if let Err(e) = check_sems(sems, st.perm.uid) {
            // The last user may have removed the segment and its set
            // since we found it: then it is not there.
            if ipc::shm_stat(id).map_or(true, |st| st.perm.mode & ipc::SHM_DEST != 0) {
                return Err(OpenError::NotFound(name));
            }
            return Err(e);
        }
        // `validate` bounded the text and placed it inside the segment.
        let mut schema = vec![0u8; fixed.schema_len as usize];
        for (i, b) in schema.iter_mut().enumerate() {
            // SAFETY: inside the attachment (validate checked that the text
            // ends where the segment does); volatile, as peers may write.
            *b = unsafe {
                att.as_ptr()
                    .add(fixed.schema_offset as usize + i)
                    .read_volatile()
            };
        }
        check_wanted(opts, &layout, &fixed, &schema)?;
        if !opts.read_only {
            count_in(sems, id, &name)?;
        }
        Ok(Self {
            live: Liveness::Sysv(Sems(sems)),
            map: Memory::sysv(att),
            broken: AtomicBool::new(false),
            backend: Backend::Sysv { key: k, id },
            fixed,
            layout,
            schema: String::from_utf8_lossy(&schema).into_owned(),
            unlink_on_drop: false,
            read_only: opts.read_only,
            held: Mutex::new(0),
            pid: sys::process::pid(),
        })
    }

    /// Dropping a System V segment (in the process that opened it): gives
    /// back the creator's semaphore and this process's count; the last
    /// user removes the segment unless it is kept, and the semaphore set
    /// once the segment is removed.
    pub(super) fn leave_sysv(&mut self, id: i32) {
        let Liveness::Sysv(sems) = &self.live else {
            return;
        };
        let sems = sems.0;
        if self.unlink_on_drop {
            // The creator's semaphore (`unlink_on_drop` says this handle
            // created the segment).
            let _ = ipc::sem_op(sems, &[SemOp::undo(0, -1)], Some(Duration::ZERO));
        }
        if self.read_only {
            return;
        }
        // Under the lock, so that no opener counts itself in between
        // our count reaching 0 and the removal (it would get a removed
        // segment); without it (a holder stuck for LOCK_WAIT), only our
        // count goes.
        let locked = ipc::sem_op(sems, &TAKE_LOCK, Some(LOCK_WAIT)).unwrap_or(false);
        let _ = ipc::sem_op(sems, &[SemOp::undo(ATTACHED, -1)], Some(Duration::ZERO));
        if locked && ipc::sem_value(sems, ATTACHED).is_ok_and(|v| v == 0) {
            let keep = ipc::sem_value(sems, KEEP).unwrap_or(1) != 0;
            let removed = ipc::shm_stat(id).map_or(true, |st| st.perm.mode & ipc::SHM_DEST != 0);
            if !keep {
                let _ = ipc::shm_remove(id);
            }
            if !keep || removed {
                // Releases the lock too: waiters wake with EIDRM.
                let _ = ipc::sem_remove(sems);
                return;
            }
        }
        if locked {
            let _ = ipc::sem_op(sems, &[SemOp::undo(LOCK, -1)], Some(Duration::ZERO));
        }
    }
}

/// Wait for [`LOCK`] to be 0, then raise it with undo.
const TAKE_LOCK: [SemOp; 2] = [
    SemOp {
        num: LOCK,
        op: 0,
        undo: false,
    },
    SemOp {
        num: LOCK,
        op: 1,
        undo: true,
    },
];

/// Counts an opener in ([`ATTACHED`]), under [`LOCK`], unless the last
/// user removed the segment meanwhile: then `NotFound` (as if the opener
/// had come a moment later), and nothing counted.
fn count_in(sems: i32, id: i32, name: &str) -> Result<(), OpenError> {
    let gone = || OpenError::NotFound(name.to_owned());
    let vanished =
        |e: &io::Error| matches!(Errno::from_io_error(e), Some(Errno::IDRM | Errno::INVAL));
    match ipc::sem_op(sems, &TAKE_LOCK, Some(LOCK_WAIT)) {
        Ok(true) => {}
        Ok(false) => {
            return Err(OpenError::Os(io::Error::new(
                io::ErrorKind::TimedOut,
                "a System V segment's lock semaphore was held too long",
            )))
        }
        Err(e) if vanished(&e) => return Err(gone()),
        Err(e) => return Err(OpenError::Os(e)),
    }
    let removed = ipc::shm_stat(id).map_or(true, |st| st.perm.mode & ipc::SHM_DEST != 0);
    let counted = if removed {
        Err(gone())
    } else {
        ipc::sem_op(sems, &[SemOp::undo(ATTACHED, 1)], Some(Duration::ZERO))
            .map(drop)
            .map_err(OpenError::Os)
    };
    let _ = ipc::sem_op(sems, &[SemOp::undo(LOCK, -1)], Some(Duration::ZERO));
    counted
}

/// Removes the System V segment under `key` (`IPC_RMID`: processes that
/// have it attached keep it), and its semaphore set if no process holds
/// the segment open (otherwise the last one removes it).
pub(super) fn unlink(key: &SysvKey) -> io::Result<()> {
    let id = ipc::shm_get(key.resolve()?)?;
    let st = ipc::shm_stat(id)?;
    let sems = if st.size >= HEADER_LEN as u64 {
        let att = ipc::Attachment::new(id, HEADER_LEN, Access::ReadOnly)?;
        // SAFETY: HEADER_LEN bytes attached, page-aligned; `Header` holds
        // only atomics and `Shared` cells.
        let header = unsafe { &*att.as_ptr().cast::<Header>() };
        header.sysv_sems.read().wrapping_sub(1)
    } else {
        -1
    };
    ipc::shm_remove(id)?;
    if sems >= 0
        && check_sems(sems, st.perm.uid).is_ok()
        && ipc::sem_value(sems, ATTACHED).is_ok_and(|v| v == 0)
    {
        let _ = ipc::sem_remove(sems);
    }
    Ok(())
}

/// Waits for READY in a segment's header; the creator is alive while it
/// holds semaphore 0 of the set the header names, or before the set is
/// written, while its process (`shm_cpid`) runs.
fn wait_ready(header: &Header, creator_pid: u32, timeout: Duration) -> Result<(), OpenError> {
    const GRACE: Duration = Duration::from_millis(20);
    let start = Instant::now();
    loop {
        // Acquire: pairs with the creator's Release store of READY.
        let state = header.state.load(Ordering::Acquire);
        let magic = header.magic.read();
        if magic != MAGIC && magic != [0; 8] {
            return Err(OpenError::BadMagic);
        }
        if state == STATE_READY && magic == MAGIC {
            return Ok(());
        }
        if state != STATE_INIT && state != STATE_READY {
            return Err(OpenError::Corrupted { field: "state" });
        }
        let sems = header.sysv_sems.read().wrapping_sub(1);
        let creator_alive = if sems >= 0 {
            ipc::sem_value(sems, 0).is_ok_and(|v| v > 0)
        } else {
            !sys::process::is_gone(creator_pid as i32, None)
        };
        let waited = start.elapsed();
        if (!creator_alive && waited >= GRACE) || waited >= timeout {
            return Err(OpenError::NotReady { creator_alive });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Checks that `sems` is a shmlane segment's semaphore set owned by the
/// segment's owner.
fn check_sems(sems: i32, owner: u32) -> Result<(), OpenError> {
    let bad = || OpenError::Corrupted {
        field: "System V semaphore set",
    };
    let st = ipc::sem_stat(sems).map_err(|_| bad())?;
    if st.perm.uid != owner
        || st.count != u64::from(SEMS)
        || ipc::sem_value(sems, MARK).map_err(|_| bad())? != MARK_VALUE
    {
        return Err(bad());
    }
    Ok(())
}
