//! System V IPC: shared-memory segments (`shmget`, `shmat`), message
//! queues (`msgget`, `msgsnd`, `msgrcv`) and semaphore sets (`semget`,
//! `semop`, `semtimedop`), named by integer keys, and the kernel's tables
//! of them (`/proc/sysvipc/*`, what `ipcs` shows).
//!
//! Neither rustix nor nix has these calls, so this module is on `libc`
//! (`semtimedop` through `syscall`, as glibc's wrapper is not in `libc`).
//! Objects are named by the id the kernel returns (`shmid`, `msqid`,
//! `semid`), never by key after the first lookup: a key is reused as soon
//! as its object is removed, an id is not (soon).
//!
//! Liveness: a semaphore changed with `SEM_UNDO` is put back by the
//! kernel when the process exits, `SIGKILL` included, so a semaphore
//! raised with undo is a liveness flag other processes can read
//! ([`sem_value`]), as an OFD lock is for a file. Unlike an OFD lock it
//! belongs to the process: a `fork`ed child does not hold it, and it
//! survives `execve`.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;
use std::time::Duration;

use crate::errno::{cvt, retry};
use crate::Access;

/// `IPC_PRIVATE`: a key that names no object (a fresh one every time).
pub const PRIVATE: i32 = libc::IPC_PRIVATE;

/// Set in [`Perm::mode`] of a segment that was removed (`IPC_RMID`) and
/// lives on until its last attachment goes (`SHM_DEST`).
pub const SHM_DEST: u32 = 0o1000;

/// The message type every frame is sent with (`mtype` must be positive).
pub const MSG_TYPE: libc::c_long = 1;

/// The key `ftok(path, id)` makes from the inode and device of `path`
/// (which must exist) and the low 8 bits of `id`.
///
/// # Errors
///
/// The OS error of `stat` (`ENOENT`...); `InvalidInput` for a NUL byte.
pub fn ftok(path: &Path, id: u8) -> io::Result<i32> {
    let c = crate::c_string(path.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path; ftok only reads it.
    let key = unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(id)) };
    if key == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(key)
    }
}

/// Owner and permissions of an object, as `IPC_STAT` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// The key it was created with (0 for `IPC_PRIVATE`, or once removed).
    pub key: i32,
    /// The owner's user id.
    pub uid: u32,
    /// The creator's user id.
    pub cuid: u32,
    /// Permission bits (and, for segments, [`SHM_DEST`]).
    pub mode: u32,
}

fn perm(p: &libc::ipc_perm) -> Perm {
    Perm {
        key: p.__key,
        uid: p.uid,
        cuid: p.cuid,
        mode: u32::from(p.mode),
    }
}

// ---------------------------------------------------------------------
// Shared memory.

/// Creates a segment of `size` bytes under `key` (`IPC_CREAT|IPC_EXCL`)
/// with permission bits `mode`; returns its id. Its pages are zero.
///
/// # Errors
///
/// `EEXIST` when the key is taken, `EINVAL` for a size above
/// `kernel.shmmax`, `ENOSPC` past `kernel.shmall` or `kernel.shmmni`,
/// `ENOMEM`.
pub fn shm_create(key: i32, size: usize, mode: u32) -> io::Result<i32> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int;
    // SAFETY: plain integers.
    cvt(unsafe { libc::shmget(key, size, flags) })
}

/// The id of the segment under `key`.
///
/// # Errors
///
/// `ENOENT` when there is none, `EACCES`.
pub fn shm_get(key: i32) -> io::Result<i32> {
    // SAFETY: plain integers.
    cvt(unsafe { libc::shmget(key, 0, 0) })
}

/// What `IPC_STAT` says of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmStat {
    /// Owner and permissions.
    pub perm: Perm,
    /// Its size in bytes, as created.
    pub size: u64,
    /// How many attachments it has, in all processes.
    pub attached: u64,
    /// The process that created it.
    pub creator_pid: u32,
    /// The process that attached or detached last.
    pub last_pid: u32,
}

/// `IPC_STAT` of segment `id`.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` once it is gone, `EACCES`.
pub fn shm_stat(id: i32) -> io::Result<ShmStat> {
    // SAFETY: plain data; all-zero is valid.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a writable shmid_ds the kernel fills.
    cvt(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(ShmStat {
        perm: perm(&ds.shm_perm),
        size: ds.shm_segsz as u64,
        attached: ds.shm_nattch as u64,
        creator_pid: ds.shm_cpid as u32,
        last_pid: ds.shm_lpid as u32,
    })
}

/// Removes segment `id` (`IPC_RMID`): its key is free at once, and the
/// segment itself goes with its last attachment.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` if it is gone already, `EPERM` for another user's.
pub fn shm_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// An attachment of a segment (`shmat`), detached (`shmdt`) on drop.
///
/// As with [`Map`](crate::map::Map), it hands out a raw pointer only:
/// other processes change the bytes at any time. A segment cannot be
/// resized or truncated by anyone, and removing it leaves attachments in
/// place, so no access inside `len` can fault.
#[derive(Debug)]
pub struct Attachment {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Attachment` owns its attachment and exposes it only through a
// raw pointer, the same on any thread.
unsafe impl Send for Attachment {}
// SAFETY: as for `Send`.
unsafe impl Sync for Attachment {}

impl Attachment {
    /// Attaches segment `id`, `len` bytes of which the caller will use
    /// (at most its size, which the caller checked with [`shm_stat`]).
    ///
    /// # Errors
    ///
    /// `EACCES` (a read-write attach of a segment we may only read),
    /// `EINVAL`/`EIDRM` once it is gone, `ENOMEM`.
    pub fn new(id: i32, len: usize, access: Access) -> io::Result<Self> {
        let flags = match access {
            Access::ReadOnly => libc::SHM_RDONLY,
            Access::ReadWrite => 0,
        };
        // SAFETY: the kernel picks the address (null hint), so the
        // attachment aliases no Rust object.
        let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("shmat: null"))?;
        Ok(Self { ptr, len })
    }

    /// The base of the attachment (page-aligned).
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length the caller asked for.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: segments have at least one byte).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // SAFETY: the address shmat returned; no reference into the
        // attachment outlives `self`.
        let _ = unsafe { libc::shmdt(self.ptr.as_ptr().cast()) };
    }
}

// ---------------------------------------------------------------------
// Semaphore sets.

/// Creates a set of `count` semaphores (all 0) under `key`
/// (`IPC_CREAT|IPC_EXCL`; [`PRIVATE`] makes a fresh unnamed one).
///
/// # Errors
///
/// `EEXIST` when the key is taken, `EINVAL` above `SEMMSL`, `ENOSPC`.
pub fn sem_create(key: i32, count: u16, mode: u32) -> io::Result<i32> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int;
    // SAFETY: plain integers.
    cvt(unsafe { libc::semget(key, libc::c_int::from(count), flags) })
}

/// The id of the semaphore set under `key`.
///
/// # Errors
///
/// `ENOENT` when there is none, `EACCES`.
pub fn sem_get(key: i32) -> io::Result<i32> {
    // SAFETY: plain integers.
    cvt(unsafe { libc::semget(key, 0, 0) })
}

/// What `IPC_STAT` says of a semaphore set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemStat {
    /// Owner and permissions.
    pub perm: Perm,
    /// How many semaphores it has.
    pub count: u64,
    /// When a `semop` last changed it (seconds since the epoch); 0 if
    /// none ever did (a set its creator has not used yet).
    pub last_op: i64,
}

/// `IPC_STAT` of semaphore set `id`.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` once it is gone, `EACCES`.
pub fn sem_stat(id: i32) -> io::Result<SemStat> {
    // SAFETY: plain data; all-zero is valid.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT takes a `struct semid_ds *` as its fourth argument.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) })?;
    Ok(SemStat {
        perm: perm(&ds.sem_perm),
        count: ds.sem_nsems as u64,
        last_op: ds.sem_otime as i64,
    })
}

/// The value of semaphore `num` of set `id` (`GETVAL`).
///
/// # Errors
///
/// `EINVAL`/`EIDRM` once the set is gone or `num` is out of range.
pub fn sem_value(id: i32, num: u16) -> io::Result<i32> {
    // SAFETY: GETVAL takes no fourth argument.
    cvt(unsafe { libc::semctl(id, libc::c_int::from(num), libc::GETVAL) })
}

/// `semctl`'s fourth argument (`union semun`, which the caller defines).
#[repr(C)]
union Semun {
    val: libc::c_int,
    buf: *mut libc::semid_ds,
    array: *mut libc::c_ushort,
}

/// Sets semaphore `num` of set `id` to `value` (`SETVAL`, no undo; the
/// undo adjustments of every process for that semaphore are cleared).
///
/// # Errors
///
/// As [`sem_value`]; `ERANGE` above `SEMVMX` (32767).
pub fn sem_set_value(id: i32, num: u16, value: i32) -> io::Result<()> {
    let arg = Semun { val: value };
    // SAFETY: SETVAL takes a `union semun` by value and reads its `val`,
    // the member set here (passed as the union, as glibc reads it with
    // `va_arg(ap, union semun)`, right on every byte order).
    cvt(unsafe { libc::semctl(id, libc::c_int::from(num), libc::SETVAL, arg) }).map(drop)
}

/// How many processes wait for semaphore `num` of set `id` to grow
/// (`GETNCNT`).
///
/// # Errors
///
/// As [`sem_value`].
pub fn sem_waiters(id: i32, num: u16) -> io::Result<i32> {
    // SAFETY: GETNCNT takes no fourth argument.
    cvt(unsafe { libc::semctl(id, libc::c_int::from(num), libc::GETNCNT) })
}

/// Removes semaphore set `id` at once; processes waiting on it wake with
/// `EIDRM`.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` if it is gone already, `EPERM` for another user's.
pub fn sem_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no fourth argument.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_RMID) }).map(drop)
}

/// One operation of [`sem_op`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemOp {
    /// Which semaphore.
    pub num: u16,
    /// Added to it; a negative one waits until it can be subtracted, 0
    /// waits until the semaphore is 0.
    pub op: i16,
    /// `SEM_UNDO`: the kernel reverts it when this process exits.
    pub undo: bool,
}

impl SemOp {
    /// `op` on `num`, undone when this process exits.
    pub fn undo(num: u16, op: i16) -> Self {
        Self {
            num,
            op,
            undo: true,
        }
    }

    /// `op` on `num`, kept after this process exits.
    pub fn keep(num: u16, op: i16) -> Self {
        Self {
            num,
            op,
            undo: false,
        }
    }
}

/// Performs `ops` on set `id` atomically (all or none). `wait`: `None`
/// waits as long as it takes, `Some(ZERO)` not at all, otherwise up to
/// that long. Returns `Ok(false)` when they could not be done without
/// waiting longer (`EAGAIN`), `Ok(true)` when done. Interruptions by
/// signals are retried (with the whole timeout again: the caller's
/// deadline loop bounds it).
///
/// # Errors
///
/// `EIDRM`/`EINVAL` once the set is gone, `ERANGE` past `SEMVMX`,
/// `EFBIG` for a `num` out of range.
pub fn sem_op(id: i32, ops: &[SemOp], wait: Option<Duration>) -> io::Result<bool> {
    let nowait = wait == Some(Duration::ZERO);
    let mut bufs: Vec<libc::sembuf> = ops
        .iter()
        .map(|o| libc::sembuf {
            sem_num: o.num,
            sem_op: o.op,
            sem_flg: ((if o.undo { libc::SEM_UNDO } else { 0 })
                | (if nowait { libc::IPC_NOWAIT } else { 0 }))
                as libc::c_short,
        })
        .collect();
    let ts = wait.filter(|_| !nowait).map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let r = retry(|| {
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `bufs` holds `len` sembufs; `tsp` is null or points to
        // a timespec that outlives the call.
        let r =
            unsafe { libc::syscall(libc::SYS_semtimedop, id, bufs.as_mut_ptr(), bufs.len(), tsp) };
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    });
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(false),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------
// Message queues.

/// Creates a message queue under `key` (`IPC_CREAT|IPC_EXCL`).
///
/// # Errors
///
/// `EEXIST` when the key is taken, `ENOSPC` past `kernel.msgmni`.
pub fn msg_create(key: i32, mode: u32) -> io::Result<i32> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int;
    // SAFETY: plain integers.
    cvt(unsafe { libc::msgget(key, flags) })
}

/// The id of the message queue under `key`.
///
/// # Errors
///
/// `ENOENT` when there is none, `EACCES`.
pub fn msg_get(key: i32) -> io::Result<i32> {
    // SAFETY: plain integers.
    cvt(unsafe { libc::msgget(key, 0) })
}

/// What `IPC_STAT` says of a message queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgStat {
    /// Owner and permissions.
    pub perm: Perm,
    /// Bytes of message text it holds at most (`msg_qbytes`).
    pub max_bytes: u64,
    /// Messages in it now.
    pub messages: u64,
    /// The process that sent last.
    pub last_sender: u32,
    /// The process that received last.
    pub last_receiver: u32,
}

/// `IPC_STAT` of message queue `id`.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` once it is gone, `EACCES`.
pub fn msg_stat(id: i32) -> io::Result<MsgStat> {
    // SAFETY: plain data; all-zero is valid.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a writable msqid_ds the kernel fills.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(MsgStat {
        perm: perm(&ds.msg_perm),
        max_bytes: ds.msg_qbytes as u64,
        messages: ds.msg_qnum as u64,
        last_sender: ds.msg_lspid as u32,
        last_receiver: ds.msg_lrpid as u32,
    })
}

/// Sets how many bytes of message text queue `id` holds (`IPC_SET` of
/// `msg_qbytes`; above `kernel.msgmnb` only with `CAP_SYS_RESOURCE`).
///
/// # Errors
///
/// `EPERM` above `kernel.msgmnb`, `EINVAL`.
pub fn msg_set_max_bytes(id: i32, bytes: u64) -> io::Result<()> {
    // SAFETY: plain data; all-zero is valid.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: as in `msg_stat`.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    ds.msg_qbytes = bytes as _;
    // SAFETY: IPC_SET reads the owner, mode and msg_qbytes from `ds`.
    cvt(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// Removes message queue `id` at once; processes waiting on it wake with
/// `EIDRM`, and what it held is gone.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` if it is gone already, `EPERM` for another user's.
pub fn msg_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// A buffer for one message: the `mtype` word, then the text; reused
/// between calls.
#[derive(Debug, Default)]
pub struct MsgBuf {
    words: Vec<libc::c_long>,
}

const WORD: usize = std::mem::size_of::<libc::c_long>();

impl MsgBuf {
    fn room(&mut self, text: usize) {
        let words = 1 + text.div_ceil(WORD);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }
}

/// Sends `frame` on queue `id` as one message of type [`MSG_TYPE`],
/// without waiting. Returns `Ok(false)` when the queue is full.
///
/// # Errors
///
/// `EIDRM`/`EINVAL` once the queue is gone (`EINVAL` also for a frame
/// above `kernel.msgmax`), `EACCES`.
pub fn msg_send(id: i32, frame: &[u8], buf: &mut MsgBuf) -> io::Result<bool> {
    buf.room(frame.len());
    buf.words[0] = MSG_TYPE;
    // SAFETY: the buffer holds the mtype word and at least `frame.len()`
    // bytes after it; `frame` does not overlap it.
    unsafe {
        std::ptr::copy_nonoverlapping(
            frame.as_ptr(),
            buf.words.as_mut_ptr().add(1).cast::<u8>(),
            frame.len(),
        );
    }
    let r = retry(|| {
        // SAFETY: a `struct msgbuf` of `frame.len()` text bytes.
        cvt(unsafe { libc::msgsnd(id, buf.words.as_ptr().cast(), frame.len(), libc::IPC_NOWAIT) })
    });
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes the first message from queue `id` into `out` (cleared first),
/// without waiting; `max` is the largest text accepted. Returns
/// `Ok(false)` when the queue is empty.
///
/// # Errors
///
/// `E2BIG` for a message above `max` (it stays queued), `EIDRM`/`EINVAL`
/// once the queue is gone, `EACCES`.
pub fn msg_recv(id: i32, out: &mut Vec<u8>, max: usize, buf: &mut MsgBuf) -> io::Result<bool> {
    buf.room(max);
    let r = retry(|| {
        // SAFETY: the buffer holds the mtype word and `max` text bytes.
        let n =
            unsafe { libc::msgrcv(id, buf.words.as_mut_ptr().cast(), max, 0, libc::IPC_NOWAIT) };
        if n == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    });
    match r {
        Ok(n) => {
            out.clear();
            // SAFETY: the kernel wrote `n <= max` text bytes after the
            // mtype word.
            let text =
                unsafe { std::slice::from_raw_parts(buf.words.as_ptr().add(1).cast::<u8>(), n) };
            out.extend_from_slice(text);
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOMSG) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes the first message from queue `id` and drops it, whatever its
/// size (`MSG_NOERROR` into no room), without waiting. Returns
/// `Ok(false)` when the queue is empty.
///
/// # Errors
///
/// `EIDRM`/`EINVAL` once the queue is gone, `EACCES`.
pub fn msg_discard(id: i32) -> io::Result<bool> {
    let mut word: libc::c_long = 0;
    let r = retry(|| {
        // SAFETY: room for the mtype word and no text; MSG_NOERROR lets
        // the kernel cut the text to nothing.
        cvt(unsafe {
            libc::msgrcv(
                id,
                (&mut word as *mut libc::c_long).cast(),
                0,
                0,
                libc::IPC_NOWAIT | libc::MSG_NOERROR,
            )
        })
    });
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOMSG) => Ok(false),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------
// The kernel's tables.

/// One row of `/proc/sysvipc/shm`, `msg` or `sem`: the columns every
/// table has, and the rest by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The key (0 for private or removed objects).
    pub key: i32,
    /// The id.
    pub id: i32,
    /// Permission bits (and [`SHM_DEST`]).
    pub mode: u32,
    /// The owner's user id.
    pub uid: u32,
    /// Every column by its header name (`size`, `nattch`, `cpid`,
    /// `qnum`, `nsems`...).
    pub fields: Vec<(String, String)>,
}

impl Row {
    /// The column `name` as a number.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
    }
}

/// Which kernel table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Shared-memory segments.
    Shm,
    /// Message queues.
    Msg,
    /// Semaphore sets.
    Sem,
}

/// The rows of a kernel table, as this user may see them (every row:
/// `/proc/sysvipc` shows all objects whatever their mode).
///
/// # Errors
///
/// The error of reading `/proc/sysvipc/TABLE` (`NotFound` on a kernel
/// built without System V IPC).
pub fn table(which: Table) -> io::Result<Vec<Row>> {
    let file = match which {
        Table::Shm => "shm",
        Table::Msg => "msg",
        Table::Sem => "sem",
    };
    let text = std::fs::read_to_string(format!("/proc/sysvipc/{file}"))?;
    Ok(parse_table(&text))
}

fn parse_table(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<&str> = head.split_whitespace().collect();
    lines
        .filter_map(|l| {
            let fields: Vec<(String, String)> = names
                .iter()
                .zip(l.split_whitespace())
                .map(|(n, v)| ((*n).to_owned(), v.to_owned()))
                .collect();
            let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            let key = field("key")?.parse().ok()?;
            // The id column is `shmid`, `msqid` or `semid`.
            let id = fields.get(1)?.1.parse().ok()?;
            let mode = u32::from_str_radix(field("perms")?, 8).ok()?;
            let uid = field("uid")?.parse().ok()?;
            Some(Row {
                key,
                id,
                mode,
                uid,
                fields,
            })
        })
        .collect()
}

/// The system's limit `name` from `/proc/sys/kernel/NAME` (`msgmax`,
/// `msgmnb`, `shmmax`...), if readable; `sem` gives its first number
/// (`SEMMSL`).
pub fn limit(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A key as `sysv:` addresses print it: `0x` and eight hex digits.
pub fn key_text(key: i32) -> String {
    format!("0x{:08x}", key as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> i32 {
        // Unlikely to collide: the pid in the high bits, a counter below.
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(1);
        let n = N.fetch_add(1, Ordering::Relaxed);
        (0x5300_0000 | ((std::process::id() & 0xffff) << 8) | (n & 0xff)) as i32
    }

    /// Held by the test that counts attachments and by the test that forks:
    /// a child forked while a segment is attached inherits the attachment,
    /// and the count it asserts would include the child's (CI saw 4, not 2).
    static FORKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn segment_attaches_shares_and_is_removed() {
        let _alone = FORKING.lock().unwrap_or_else(|e| e.into_inner());
        let k = key();
        let id = shm_create(k, 10_000, 0o600).unwrap();
        assert_eq!(
            shm_create(k, 10_000, 0o600).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert_eq!(shm_get(k).unwrap(), id);
        let st = shm_stat(id).unwrap();
        assert_eq!(st.size, 10_000);
        assert_eq!(st.perm.key, k);
        assert_eq!(st.perm.mode & 0o777, 0o600);
        assert_eq!(st.creator_pid, std::process::id());
        let a = Attachment::new(id, 10_000, Access::ReadWrite).unwrap();
        let b = Attachment::new(id, 10_000, Access::ReadOnly).unwrap();
        assert_eq!(shm_stat(id).unwrap().attached, 2);
        // SAFETY: both attachments are 10,000 bytes and live here.
        unsafe {
            a.as_ptr().add(9_999).write_volatile(7);
            assert_eq!(b.as_ptr().add(9_999).read_volatile(), 7);
        }
        let row = table(Table::Shm)
            .unwrap()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap();
        assert_eq!(row.key, k);
        assert_eq!(row.get("size"), Some(10_000));
        assert_eq!(row.get("nattch"), Some(2));
        shm_remove(id).unwrap();
        // The key is free at once; the attachments stay.
        assert_eq!(shm_get(k).unwrap_err().raw_os_error(), Some(libc::ENOENT));
        let st = shm_stat(id).unwrap();
        assert!(st.perm.mode & SHM_DEST != 0);
        // SAFETY: as above.
        unsafe { assert_eq!(b.as_ptr().add(9_999).read_volatile(), 7) };
        drop(a);
        drop(b);
        assert!(shm_stat(id).is_err());
    }

    #[test]
    fn semaphores_with_undo_are_liveness_flags() {
        let _alone = FORKING.lock().unwrap_or_else(|e| e.into_inner());
        let id = sem_create(PRIVATE, 3, 0o600).unwrap();
        assert_eq!(sem_stat(id).unwrap().count, 3);
        // Take semaphore 1 if it is 0.
        let take = [SemOp::keep(1, 0), SemOp::undo(1, 1)];
        assert!(sem_op(id, &take, Some(Duration::ZERO)).unwrap());
        assert!(!sem_op(id, &take, Some(Duration::ZERO)).unwrap());
        assert_eq!(sem_value(id, 1).unwrap(), 1);
        // A child that takes semaphore 2 and dies: the kernel puts it back.
        // SAFETY: the child only makes async-signal-safe system calls and
        // exits with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut op = libc::sembuf {
                sem_num: 2,
                sem_op: 1,
                sem_flg: libc::SEM_UNDO as libc::c_short,
            };
            // SAFETY: one sembuf.
            unsafe {
                libc::semop(id, &mut op, 1);
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(sem_value(id, 2).unwrap(), 0);
        // A timed wait that cannot succeed returns false.
        assert!(!sem_op(id, &[SemOp::keep(0, -1)], Some(Duration::from_millis(5))).unwrap());
        sem_set_value(id, 0, 2).unwrap();
        assert!(sem_op(id, &[SemOp::keep(0, -1)], None).unwrap());
        assert_eq!(sem_value(id, 0).unwrap(), 1);
        assert_eq!(sem_waiters(id, 0).unwrap(), 0);
        assert!(sem_op(id, &[SemOp::undo(1, -1)], Some(Duration::ZERO)).unwrap());
        sem_remove(id).unwrap();
        assert!(sem_value(id, 0).is_err());
    }

    #[test]
    fn messages_keep_their_boundaries() {
        let k = key();
        let id = msg_create(k, 0o600).unwrap();
        assert_eq!(msg_get(k).unwrap(), id);
        let mut buf = MsgBuf::default();
        assert!(msg_send(id, b"hello", &mut buf).unwrap());
        assert!(msg_send(id, b"", &mut buf).unwrap());
        assert!(msg_send(id, &[9; 100], &mut buf).unwrap());
        assert_eq!(msg_stat(id).unwrap().messages, 3);
        let mut out = Vec::new();
        assert!(msg_recv(id, &mut out, 8192, &mut buf).unwrap());
        assert_eq!(out, b"hello");
        assert!(msg_recv(id, &mut out, 8192, &mut buf).unwrap());
        assert!(out.is_empty());
        // Too large for the buffer: refused, and kept.
        assert_eq!(
            msg_recv(id, &mut out, 10, &mut buf)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::E2BIG)
        );
        assert!(msg_recv(id, &mut out, 100, &mut buf).unwrap());
        assert_eq!(out, [9; 100]);
        assert!(!msg_recv(id, &mut out, 100, &mut buf).unwrap());
        msg_set_max_bytes(id, 100).unwrap();
        assert_eq!(msg_stat(id).unwrap().max_bytes, 100);
        assert!(msg_send(id, &[1; 60], &mut buf).unwrap());
        assert!(!msg_send(id, &[1; 60], &mut buf).unwrap());
        msg_remove(id).unwrap();
        assert!(msg_send(id, b"x", &mut buf).is_err());
    }

    #[test]
    fn tables_parse() {
        let text = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                    1392508929          5  1600                  8192  1234  1235      1  1000  1000  1000  1000          0          0 1700000000                  4096                     0\n";
        let rows = parse_table(text);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key, 1_392_508_929);
        assert_eq!(rows[0].id, 5);
        assert_eq!(rows[0].mode, 0o600 | SHM_DEST);
        assert_eq!(rows[0].uid, 1000);
        assert_eq!(rows[0].get("cpid"), Some(1234));
        assert_eq!(key_text(0x1234), "0x00001234");
        assert!(ftok(Path::new("/"), 1).is_ok());
    }
}
