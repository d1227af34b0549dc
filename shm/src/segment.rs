//! Creating, opening, validating and attaching to segments.

use std::fmt;
use std::fs::{self, File, OpenOptions as FsOpenOptions};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use shmlane_ring::{RingKind, RingLayout};
use shmlane_semaphore::sigbus;

use crate::error::{AddressError, AttachError, CreateError, OpenError};
use crate::header::{
    occupied, Fixed, Header, Participant, HEADER_LEN, LOCK_BASE, MAGIC, MAX_PARTICIPANTS,
    MAX_SCHEMA_LEN, STATE_INIT, STATE_READY, STATUS_ATTACHED, STATUS_ATTACHING, STATUS_FREE,
    TYPE_NAME_LEN, VERSION,
};
use crate::{fault, sys};

/// Where a segment lives, parsed from `shm:NAME` or `file:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// Named POSIX shared memory (`/dev/shm/NAME`).
    Shm(String),
    /// A mmapped file; survives restarts of both sides when kept.
    File(PathBuf),
}

impl Address {
    /// Parses `shm:NAME` or `file:PATH`.
    ///
    /// # Errors
    ///
    /// [`AddressError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let (scheme, rest) = s.split_once(':').unwrap_or((s, ""));
        match scheme {
            "shm" => {
                let ok = !rest.is_empty()
                    && rest.len() <= 250
                    && !rest.contains('/')
                    && !rest.contains('\0')
                    && rest != "."
                    && rest != "..";
                if ok {
                    Ok(Self::Shm(rest.to_owned()))
                } else {
                    Err(AddressError::BadName(rest.to_owned()))
                }
            }
            "file" if rest.is_empty() => Err(AddressError::MissingPath),
            "file" => Ok(Self::File(PathBuf::from(rest))),
            other => Err(AddressError::UnknownScheme(other.to_owned())),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shm(n) => write!(f, "shm:{n}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

/// Where an open segment came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Named POSIX shared memory.
    Shm(String),
    /// A mmapped file.
    File(PathBuf),
    /// An anonymous memfd, shared by inheritance.
    Memfd,
}

/// What a segment carries, so that two sides agree on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// Readable name, for messages and tools (cut to 95 bytes in the
    /// header); not compared.
    pub name: String,
    /// What both sides must agree on, as text: the type's structural
    /// schema (see the codec crate). Stored whole after the ring region
    /// and compared byte for byte. Written as lines, the ones that name a
    /// part reading `KEY: VALUE`, so that the first line that differs
    /// says where two types differ.
    pub schema: String,
    /// `size_of` the type.
    pub size: u64,
    /// `align_of` the type.
    pub align: u64,
    /// Which codec frames it.
    pub codec: u32,
}

impl TypeInfo {
    /// The fingerprint stored in the header: FNV-1a over schema, size,
    /// alignment and codec.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(self.schema.as_bytes());
        eat(&self.size.to_le_bytes());
        eat(&self.align.to_le_bytes());
        eat(&self.codec.to_le_bytes());
        h
    }

    /// Whether a segment with `fixed` and `schema` carries this type: the
    /// hash first (one comparison), then the text itself, so that a hash
    /// collision cannot pass.
    fn matches(&self, fixed: &Fixed, schema: &[u8]) -> bool {
        fixed.type_hash == self.hash()
            && fixed.type_size == self.size
            && fixed.type_align == self.align
            && fixed.codec == self.codec
            && schema == self.schema.as_bytes()
    }

    /// What differs between this type and the one a segment carries, in
    /// words, or `None` where the names say it all (another codec).
    fn difference(&self, fixed: &Fixed, schema: &[u8]) -> Option<String> {
        let theirs = String::from_utf8_lossy(schema);
        if fixed.codec != self.codec {
            None
        } else if theirs != self.schema {
            Some(first_difference(&self.schema, &theirs))
        } else if (fixed.type_size, fixed.type_align) != (self.size, self.align) {
            Some(format!(
                "same structure, but {} bytes aligned to {} here and {} aligned to {} in the \
                 segment (built with other codec settings?)",
                self.size, self.align, fixed.type_size, fixed.type_align
            ))
        } else {
            Some("the header's type hash does not match its schema (a corrupted header?)".into())
        }
    }
}

/// The first line where two schema texts differ, in words: for lines
/// `KEY: A` and `KEY: B`, "KEY: A here, B in the segment"; otherwise both
/// lines whole.
pub(crate) fn first_difference(ours: &str, theirs: &str) -> String {
    let (mut a, mut b) = (ours.lines(), theirs.lines());
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => {
                return match (x.split_once(": "), y.split_once(": ")) {
                    (Some((kx, vx)), Some((ky, vy))) if kx == ky => {
                        format!("{kx}: {vx} here, {vy} in the segment")
                    }
                    _ => format!("`{x}` here, `{y}` in the segment"),
                }
            }
            (Some(x), None) => return format!("`{x}` here, nothing more in the segment"),
            (None, Some(y)) => return format!("nothing more here, `{y}` in the segment"),
            (None, None) => return "no difference".into(),
        }
    }
}

/// The shape of a new segment.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Ring algorithm.
    pub kind: RingKind,
    /// Messages held at most.
    pub capacity: u64,
    /// Payload bytes per slot.
    pub slot_size: usize,
    /// Payload alignment.
    pub slot_align: usize,
    /// The message type.
    pub ty: TypeInfo,
}

/// Options for [`Segment::create`].
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Permission bits (default `0o600`); applied exactly, not through the
    /// umask.
    pub mode: u32,
    /// Keep the name or file after the creator drops the segment (default:
    /// unlink it).
    pub keep: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            mode: 0o600,
            keep: false,
        }
    }
}

/// Options for [`Segment::open`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long to wait for the creator to publish the segment (default 1 s).
    pub ready_timeout: Duration,
    /// The uid that must own the file (default: this process's euid).
    pub owner: Option<u32>,
    /// Accept a file writable by group or others (default: refuse).
    pub allow_group_write: bool,
    /// Map read-only; such a segment cannot be attached to (for tools).
    pub read_only: bool,
    /// The ring kind this side needs, if it needs one.
    pub kind: Option<RingKind>,
    /// The message type this side needs, if it needs one.
    pub ty: Option<TypeInfo>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(1),
            owner: None,
            allow_group_write: false,
            read_only: false,
            kind: None,
            ty: None,
        }
    }
}

/// The side a participant plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Pushes messages.
    Sender,
    /// Pops messages.
    Receiver,
}

impl Role {
    fn index(self) -> usize {
        match self {
            Self::Sender => 0,
            Self::Receiver => 1,
        }
    }

    fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Sender),
            1 => Some(Self::Receiver),
            _ => None,
        }
    }

    /// "sender" or "receiver".
    pub fn name(self) -> &'static str {
        match self {
            Self::Sender => "sender",
            Self::Receiver => "receiver",
        }
    }
}

/// One row of [`Segment::participants`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// Slot in the participant table.
    pub index: usize,
    /// Its role (`None` if the table holds garbage).
    pub role: Option<Role>,
    /// Its process id.
    pub pid: u32,
    /// Whether it still holds its lock.
    pub alive: bool,
}

/// A mapped, validated segment. The layout was copied out of shared memory
/// when it was opened and is never read from there again.
pub struct Segment {
    file: File,
    /// SIGBUS protection of `map`; declared before it so that it is
    /// dropped (unregistered) before the mapping is unmapped.
    guard: Option<sigbus::Registration>,
    map: MmapRaw,
    /// Set once the file was found shorter than the layout.
    broken: AtomicBool,
    backend: Backend,
    fixed: Fixed,
    layout: RingLayout,
    /// The message type's schema text, as copied when opened (lossy
    /// UTF-8; for messages and tools).
    schema: String,
    unlink_on_drop: bool,
    read_only: bool,
    /// Participant slots this `Segment` holds (bit i = slot i). Locks taken
    /// through our own open file description are invisible to `F_OFD_GETLK`
    /// from it, so our own slots are known here instead.
    held: Mutex<u32>,
    /// The process that created or opened it: a forked child's copy never
    /// unlinks the parent's segment.
    pid: u32,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("backend", &self.backend)
            .field("layout", &self.layout)
            .field("type", &self.fixed.type_name())
            .finish_non_exhaustive()
    }
}

fn lock_offset(index: usize) -> u64 {
    LOCK_BASE + 1 + index as u64
}

const CREATOR_LOCK: u64 = LOCK_BASE;

fn map_err_create(addr: &str, e: io::Error) -> CreateError {
    match e.kind() {
        io::ErrorKind::AlreadyExists => CreateError::AlreadyExists(addr.to_owned()),
        io::ErrorKind::PermissionDenied => CreateError::PermissionDenied(addr.to_owned()),
        _ => CreateError::Os(e),
    }
}

fn map_err_open(addr: &str, e: io::Error) -> OpenError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound(addr.to_owned()),
        Some(libc::EACCES | libc::EPERM) => OpenError::PermissionDenied(addr.to_owned()),
        Some(libc::ELOOP) => OpenError::Symlink(addr.to_owned()),
        Some(libc::EISDIR) => OpenError::NotRegularFile { found: "directory" },
        Some(libc::ENXIO) => OpenError::NotRegularFile {
            found: "socket or device",
        },
        _ => OpenError::Os(e),
    }
}

/// Removes a half-made segment's private name if creation fails.
struct Unlinker<'a>(Option<&'a Path>);

impl Drop for Unlinker<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// The largest segment this build creates: 128 TiB, the user address space
/// of x86-64 and of most aarch64 kernels (no process could map more).
pub const MAX_SEGMENT_LEN: u64 = 1 << 47;

/// The prefix of the private names segments are built under.
pub const STAGING_PREFIX: &str = ".shmlane-new-";

/// A fresh private name for a segment being built by this process:
/// `.shmlane-new-PID-START-N`, where START is this process's start time
/// (so a reused pid is told apart) and N counts within the process.
fn staging_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    // Relaxed: only uniqueness within this process matters.
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = sys::pid();
    format!("{STAGING_PREFIX}{pid}-{}-{n}", sys::start_time(pid))
}

/// The process that is building (or was building, and died) a segment
/// under a private name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creator {
    /// Its process id.
    pub pid: u32,
    /// Its start time (clock ticks since boot), as `/proc/PID/stat` says.
    pub start: u64,
}

impl Creator {
    /// Whether that process still runs: the pid exists and has the same
    /// start time (a reused pid does not count). Unknown counts as alive.
    pub fn is_alive(&self) -> bool {
        match sys::start_time(self.pid) {
            0 => std::path::Path::new(&format!("/proc/{}", self.pid)).exists(),
            now => now == self.start,
        }
    }
}

/// If `file_name` is a private name a segment is built under
/// (`.shmlane-new-PID-START-N`), the process building it. A private name
/// whose creator is dead is left over from a crash and safe to remove;
/// one whose creator lives is about to be renamed into place.
pub fn staging_owner(file_name: &str) -> Option<Creator> {
    let rest = file_name.strip_prefix(STAGING_PREFIX)?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u32>().ok()?;
    parts.next().is_none().then_some(Creator { pid, start })
}

/// The segment's length: header page, ring region, schema text.
fn total_len(layout: &RingLayout, ty: &TypeInfo) -> Result<usize, CreateError> {
    if ty.schema.len() > MAX_SCHEMA_LEN {
        return Err(CreateError::SchemaTooLong {
            len: ty.schema.len(),
            max: MAX_SCHEMA_LEN,
        });
    }
    let total = HEADER_LEN
        .checked_add(layout.region_len())
        .and_then(|n| n.checked_add(ty.schema.len()))
        .ok_or(CreateError::Layout(shmlane_ring::LayoutError::Overflow))?;
    if total as u64 > MAX_SEGMENT_LEN || total > isize::MAX as usize {
        return Err(CreateError::TooLarge {
            needed: total as u64,
            limit: MAX_SEGMENT_LEN,
        });
    }
    Ok(total)
}

/// Refuses, before anything is created, a segment the filesystem at `dir`
/// has no room for.
fn check_space(dir: &Path, needed: u64) -> Result<(), CreateError> {
    match sys::available_space(dir) {
        Ok(available) if available < needed => Err(CreateError::NoSpace {
            needed,
            available,
            path: dir.to_owned(),
        }),
        // An unknown figure is not a refusal: the reservation decides.
        _ => Ok(()),
    }
}

/// Registers a file-backed mapping with the SIGBUS handler. A memfd is
/// sealed against shrinking and needs no protection.
fn protect(backend: &Backend, map: &MmapRaw) -> Option<sigbus::Registration> {
    if *backend == Backend::Memfd {
        return None;
    }
    // SAFETY: the mapping belongs to the segment being built, which drops
    // the registration before the mapping (field order); every value read
    // from it is validated, so zeros in place of it are harmless, and the
    // segment reports itself broken from then on.
    Some(unsafe { sigbus::register(map.as_mut_ptr(), map.len()) })
}

/// Removes the name or file of a segment. Processes that have it mapped
/// keep using it.
///
/// # Errors
///
/// The OS error (`NotFound` if nothing is there).
pub fn unlink(addr: &Address) -> io::Result<()> {
    match addr {
        Address::Shm(name) => sys::shm_unlink(name),
        Address::File(path) => fs::remove_file(path),
    }
}

impl Segment {
    /// Creates a segment at `addr`, atomically: the segment is built under
    /// a private name in the same directory (see [`staging_owner`]) and
    /// renamed to `addr` only once it is READY, so nobody ever sees a
    /// half-made segment under the public name, and a creator killed at
    /// any point leaves either nothing there or a complete segment.
    ///
    /// Before anything is created the exact size is computed (checked
    /// arithmetic) and compared with the filesystem's free space
    /// (`statvfs`); the bytes are then reserved (`posix_fallocate`) so no
    /// page of the segment can fault for lack of space later. The private
    /// file is created with `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC` and the
    /// mode exactly as asked.
    ///
    /// # Errors
    ///
    /// [`CreateError`]: already exists, permission denied, a bad layout,
    /// [`NoSpace`](CreateError::NoSpace) (nothing is left behind),
    /// [`TooLarge`](CreateError::TooLarge), or the OS error.
    pub fn create(addr: &Address, spec: &Spec, opts: &CreateOptions) -> Result<Self, CreateError> {
        let layout = layout_of(spec)?;
        let total = total_len(&layout, &spec.ty)?;
        let name = addr.to_string();
        let public = match addr {
            Address::Shm(n) => shm_path(n),
            Address::File(p) => p.clone(),
        };
        // Fail fast (the rename below is the real arbiter).
        if fs::symlink_metadata(&public).is_ok() {
            return Err(CreateError::AlreadyExists(name));
        }
        let dir = match public.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        check_space(&dir, total as u64)?;
        let staged = staging_name();
        let staged_path = dir.join(&staged);
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let file = match addr {
            Address::Shm(_) => sys::shm_open(&staged, flags, opts.mode),
            Address::File(_) => FsOpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(opts.mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&staged_path),
        }
        .map_err(|e| map_err_create(&name, e))?;
        // Removes the private name if anything below fails.
        let mut guard = Unlinker(Some(&staged_path));
        fault::point("create.after_open");
        // The umask may have cleared bits the caller asked for.
        file.set_permissions(fs::Permissions::from_mode(opts.mode))
            .map_err(CreateError::Os)?;
        let backend = match addr {
            Address::Shm(n) => Backend::Shm(n.clone()),
            Address::File(p) => Backend::File(p.clone()),
        };
        let mut seg = Self::init(file, backend, spec, layout, total, &dir)?;
        fault::point("create.before_rename");
        sys::rename_noreplace(&staged_path, &public).map_err(|e| map_err_create(&name, e))?;
        guard.0 = None;
        fault::point("create.after_rename");
        seg.unlink_on_drop = !opts.keep;
        Ok(seg)
    }

    /// Creates an anonymous segment in a memfd, sealed against shrinking
    /// and growing. Hand it to a child through [`Segment::file`] (a duplicate without
    /// close-on-exec) and open it there with
    /// [`Segment::open_inherited`].
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_memfd(spec: &Spec) -> Result<Self, CreateError> {
        let layout = layout_of(spec)?;
        let total = total_len(&layout, &spec.ty)?;
        let file = sys::memfd_create("shmlane").map_err(CreateError::Os)?;
        let seg = Self::init(
            file,
            Backend::Memfd,
            spec,
            layout,
            total,
            Path::new("memfd"),
        )?;
        sys::seal_size(&seg.file).map_err(CreateError::Os)?;
        Ok(seg)
    }

    fn init(
        file: File,
        backend: Backend,
        spec: &Spec,
        layout: RingLayout,
        total: usize,
        dir: &Path,
    ) -> Result<Self, CreateError> {
        // Held until this segment is dropped: openers tell "creator still
        // initialising" from "creator died" by it.
        if !sys::try_lock_byte(&file, CREATOR_LOCK).map_err(CreateError::Os)? {
            return Err(CreateError::Os(io::Error::other(
                "creator lock already held",
            )));
        }
        // Reserve every byte before touching any: on a full filesystem this
        // fails here with ENOSPC instead of a SIGBUS on first touch.
        match sys::allocate(&file, total as u64) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                return Err(CreateError::NoSpace {
                    needed: total as u64,
                    available: sys::available_space(dir).unwrap_or(0),
                    path: dir.to_owned(),
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::EFBIG) => {
                return Err(CreateError::TooLarge {
                    needed: total as u64,
                    limit: MAX_SEGMENT_LEN,
                })
            }
            Err(e) => return Err(CreateError::Os(e)),
        }
        fault::point("create.after_reserve");
        let map = MmapOptions::new()
            .len(total)
            .map_raw(&file)
            .map_err(CreateError::Os)?;
        let guard = protect(&backend, &map);
        let mut type_name = [0u8; TYPE_NAME_LEN];
        let cut = spec.ty.name.len().min(TYPE_NAME_LEN - 1);
        type_name[..cut].copy_from_slice(&spec.ty.name.as_bytes()[..cut]);
        let schema_offset = HEADER_LEN + layout.region_len();
        // Through the file, not the mapping: no reference into shared
        // memory, and nobody else can see this file before READY.
        file.write_all_at(spec.ty.schema.as_bytes(), schema_offset as u64)
            .map_err(CreateError::Os)?;
        let fixed = Fixed {
            ring_kind: kind_to_raw(layout.kind()),
            codec: spec.ty.codec,
            capacity: layout.capacity(),
            slots: layout.slots(),
            slot_size: layout.slot_size() as u64,
            slot_align: layout.slot_align() as u64,
            data_offset: HEADER_LEN as u64,
            total_len: total as u64,
            type_hash: spec.ty.hash(),
            type_size: spec.ty.size,
            type_align: spec.ty.align,
            schema_offset: schema_offset as u64,
            schema_len: spec.ty.schema.len() as u64,
            type_name,
        };
        let seg = Self {
            file,
            guard,
            map,
            broken: AtomicBool::new(false),
            backend,
            fixed,
            layout,
            schema: spec.ty.schema.clone(),
            unlink_on_drop: false,
            read_only: false,
            held: Mutex::new(0),
            pid: sys::pid(),
        };
        let h = seg.header();
        h.magic.write(MAGIC);
        h.version.write(VERSION);
        h.fixed.write(fixed);
        h.creator_pid.write(sys::pid());
        h.creator_start.write(sys::start_time(sys::pid()));
        fault::point("create.after_header");
        let (base, len) = seg.ring_region();
        // SAFETY: the region lies inside our fresh mapping (HEADER_LEN +
        // region_len bytes, then the schema), page-aligned plus HEADER_LEN (4096, at least the
        // region alignment), and nobody can use it before READY.
        unsafe { layout.init(base, len) }.map_err(CreateError::Layout)?;
        if seg.is_broken() {
            return Err(CreateError::Os(io::Error::other(
                "the segment was truncated by another process while it was being created",
            )));
        }
        // Release: publishes every field written above; pairs with the
        // Acquire load of `state` in `open`.
        h.state.store(STATE_READY, Ordering::Release);
        Ok(seg)
    }

    /// Opens the segment at `addr`, waits (bounded) for it to be ready,
    /// and validates every header field.
    ///
    /// # Errors
    ///
    /// [`OpenError`] naming what is wrong.
    pub fn open(addr: &Address, opts: &OpenOptions) -> Result<Self, OpenError> {
        let name = addr.to_string();
        let file = match addr {
            Address::Shm(n) => {
                let flags = if opts.read_only {
                    libc::O_RDONLY
                } else {
                    libc::O_RDWR
                };
                sys::shm_open(n, flags | libc::O_NOFOLLOW, 0)
            }
            Address::File(p) => FsOpenOptions::new()
                .read(true)
                .write(!opts.read_only)
                // O_NONBLOCK: opening a FIFO must not hang; no effect on files.
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(p),
        }
        .map_err(|e| map_err_open(&name, e))?;
        let backend = match addr {
            Address::Shm(n) => Backend::Shm(n.clone()),
            Address::File(p) => Backend::File(p.clone()),
        };
        Self::open_file(file, backend, opts)
    }

    /// Opens a memfd segment inherited from a parent as file descriptor
    /// `fd`. It is reopened through `/proc/self/fd`, so this process gets
    /// its own open file description (its own liveness locks).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_inherited(fd: RawFd, opts: &OpenOptions) -> Result<Self, OpenError> {
        // Only a path is formed from the number; nothing is done through it
        // as a descriptor, so any number is safe to pass.
        let path = format!("/proc/self/fd/{fd}");
        let file = FsOpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            // O_NONBLOCK: a number that names a FIFO must not hang the open.
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| map_err_open(&path, e))?;
        Self::open_file(file, Backend::Memfd, opts)
    }

    fn open_file(file: File, backend: Backend, opts: &OpenOptions) -> Result<Self, OpenError> {
        let meta = file.metadata().map_err(OpenError::Os)?;
        let ft = meta.file_type();
        if !ft.is_file() {
            let found = if ft.is_dir() {
                "directory"
            } else if ft.is_fifo() {
                "FIFO"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "device"
            } else {
                "special file"
            };
            return Err(OpenError::NotRegularFile { found });
        }
        let expected = opts.owner.unwrap_or_else(sys::euid);
        if meta.uid() != expected {
            return Err(OpenError::WrongOwner {
                expected,
                found: meta.uid(),
            });
        }
        let mode = meta.mode() & 0o7777;
        // A memfd is always mode 0777 and has no name: only processes handed
        // its descriptor can reach it, so its mode says nothing.
        if mode & 0o022 != 0 && !opts.allow_group_write && backend != Backend::Memfd {
            return Err(OpenError::InsecureMode { mode });
        }
        let len = wait_ready(&file, opts.ready_timeout)?;
        let len_usize = usize::try_from(len).map_err(|_| OpenError::LayoutMismatch {
            field: "file length",
            detail: len.to_string(),
        })?;
        let map = if opts.read_only {
            MmapOptions::new().len(len_usize).map_raw_read_only(&file)
        } else {
            MmapOptions::new().len(len_usize).map_raw(&file)
        }
        .map_err(OpenError::Os)?;
        let guard = protect(&backend, &map);
        // SAFETY: the mapping is at least HEADER_LEN bytes (wait_ready checked
        // the length), page-aligned, and lives as long as `map`; `Header`
        // holds only atomics and `Shared` cells, valid for any bytes.
        let header = unsafe { &*map.as_ptr().cast::<Header>() };
        // Acquire: pairs with the creator's Release store of READY, so the
        // fields read below are the ones it wrote.
        if header.state.load(Ordering::Acquire) != STATE_READY {
            return Err(OpenError::Corrupted { field: "state" });
        }
        if header.magic.read() != MAGIC {
            return Err(OpenError::BadMagic);
        }
        let version = header.version.read();
        if version != VERSION {
            return Err(OpenError::VersionMismatch {
                found: version,
                supported: VERSION,
            });
        }
        let fixed = header.fixed.read();
        let layout = validate(&fixed, len)?;
        // `validate` bounded the length and placed the text inside the file.
        let mut schema = vec![0u8; fixed.schema_len as usize];
        file.read_exact_at(&mut schema, fixed.schema_offset)
            .map_err(OpenError::Os)?;
        if let Some(kind) = opts.kind {
            if kind != layout.kind() {
                return Err(OpenError::LayoutMismatch {
                    field: "ring kind",
                    detail: format!(
                        "this side needs {kind:?}, the segment is {:?}",
                        layout.kind()
                    ),
                });
            }
        }
        if let Some(ty) = &opts.ty {
            if !ty.matches(&fixed, &schema) {
                return Err(OpenError::TypeMismatch {
                    expected: ty.name.clone(),
                    found: fixed.type_name(),
                    difference: ty.difference(&fixed, &schema),
                });
            }
        }
        if backend == Backend::Memfd {
            let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
            if sys::seals(&file) & want != want {
                return Err(OpenError::LayoutMismatch {
                    field: "seals",
                    detail: "memfd is not sealed against resizing".into(),
                });
            }
        }
        Ok(Self {
            file,
            guard,
            map,
            broken: AtomicBool::new(false),
            backend,
            fixed,
            layout,
            schema: String::from_utf8_lossy(&schema).into_owned(),
            unlink_on_drop: false,
            read_only: opts.read_only,
            held: Mutex::new(0),
            pid: sys::pid(),
        })
    }

    /// The header in shared memory (atomics and volatile cells only).
    #[inline]
    pub fn header(&self) -> &Header {
        // SAFETY: as in `open_file`: the mapping outlives `self` and holds a
        // header page.
        unsafe { &*self.map.as_ptr().cast::<Header>() }
    }

    /// The ring region: base and length.
    pub fn ring_region(&self) -> (NonNull<u8>, usize) {
        let base = self.map.as_mut_ptr().wrapping_add(HEADER_LEN);
        // SAFETY: an in-bounds offset from a non-null mapping.
        (
            unsafe { NonNull::new_unchecked(base) },
            self.layout.region_len(),
        )
    }

    /// The ring layout, as validated when the segment was opened.
    pub fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// The header's descriptive fields, as copied when opened.
    pub fn fixed(&self) -> &Fixed {
        &self.fixed
    }

    /// The schema text of the message type the segment carries, as copied
    /// when opened (for tools and messages; see [`TypeInfo::schema`]).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Where the segment came from.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The open file (for a memfd: the descriptor to hand to a child).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether the segment was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the segment is known to be broken: another process truncated
    /// its file, and either an access faulted (the SIGBUS handler then put
    /// private zeros in place of the mapping) or
    /// [`check_intact`](Self::check_intact) found the file short. One or two loads; no
    /// system call. A broken segment never becomes whole again.
    #[inline]
    pub fn is_broken(&self) -> bool {
        // Relaxed: a sticky flag; the data it concerns is not trusted anyway.
        self.broken.load(Ordering::Relaxed) || self.guard.as_ref().is_some_and(|g| g.is_broken())
    }

    /// Checks (one `fstat`) that the file still has the segment's length,
    /// and marks the segment broken if it does not; returns whether it is
    /// intact. A truncation that leaves the pages this process touches in
    /// place faults nowhere, so handles call this now and then while they
    /// wait.
    pub fn check_intact(&self) -> bool {
        if self.is_broken() {
            return false;
        }
        if self.backend != Backend::Memfd
            && sigbus::shorter_than(std::os::fd::AsFd::as_fd(&self.file), self.fixed.total_len)
        {
            // Relaxed: as in `is_broken`.
            self.broken.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn participant(&self, index: usize) -> &Participant {
        &self.header().participants[index]
    }

    fn is_alive(&self, index: usize) -> bool {
        if *self.held.lock().unwrap_or_else(|e| e.into_inner()) & (1 << index) != 0 {
            return true;
        }
        // An error here (it should not happen) counts as alive: never reap a
        // participant we cannot prove dead.
        sys::byte_is_locked(&self.file, lock_offset(index)).unwrap_or(true)
    }

    /// Marks a dead participant's slot free, once; the winner also takes
    /// back the dead's parked-waiter announcements, counts the death, and
    /// wakes every waiter so that survivors recover what the dead held.
    fn reap(&self, index: usize, seen_state: u64, role: Role) {
        let p = self.participant(index);
        let next = ((seen_state >> 8).wrapping_add(1) << 8) | STATUS_FREE;
        // AcqRel: orders the reap with the attach that set `seen_state`;
        // only one reaper (or attacher) wins the exchange.
        if p.state
            .compare_exchange(seen_state, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let h = self.header();
            // Only an attach that got as far as ATTACHED surely counted
            // itself; one that died attaching may leave the count one too
            // high, which is safe (peers confirm a zero by a scan, and
            // find "none left" by a scan when it never reaches zero).
            if seen_state & 0xff == STATUS_ATTACHED {
                self.count_down(role);
            }
            // It existed: its peers must learn when every one of its role
            // is gone, even if it died before saying so itself.
            // Release: pairs with the Acquire load in `ever_attached`.
            h.seen[role.index()].store(1, Ordering::Release);
            // Relaxed: the dead cannot change its tally any more; the CAS
            // above makes this reaper the only one to read and clear it.
            let parked = [
                p.waiting[0].swap(0, Ordering::Relaxed),
                p.waiting[1].swap(0, Ordering::Relaxed),
            ];
            h.not_empty.0.forget_waiters(parked[0]);
            h.not_full.0.forget_waiters(parked[1]);
            // Release: pairs with the Acquire load in `reaped`, so a
            // survivor that sees the new count also sees the reap.
            h.reaped.fetch_add(1, Ordering::Release);
            h.not_empty.0.notify_all();
            h.not_full.0.notify_all();
        }
    }

    /// How many dead participants were reaped, ever (a change means slots
    /// held by the dead may need recovering).
    #[inline]
    pub fn reaped(&self) -> u64 {
        // Acquire: pairs with the Release increment in `reap`.
        self.header().reaped.load(Ordering::Acquire)
    }

    /// Whether the participant that `who` (an [`Attachment::owner_id`])
    /// names can never act on the segment again: it detached, was reaped,
    /// or its liveness lock is free (then it is reaped here). A `who` that
    /// names no participant (garbage from a peer) counts as dead.
    pub fn owner_is_dead(&self, who: u64) -> bool {
        let slot = (who & 0x3f) as usize;
        if slot == 0 || slot > MAX_PARTICIPANTS {
            return true;
        }
        let index = slot - 1;
        let p = self.participant(index);
        // Acquire: as in `live_count`.
        let state = p.state.load(Ordering::Acquire);
        if !occupied(state) || (state >> 8) & 0xffff_ffff != who >> 6 {
            return true;
        }
        if self.is_alive(index) {
            return false;
        }
        if !self.read_only {
            if let Some(role) = Role::from_raw(p.role.load(Ordering::Relaxed)) {
                self.reap(index, state, role);
            }
        }
        true
    }

    /// This process's parked-waiter tally in participant slot `index`, for
    /// `not_empty` (`full == false`) or `not_full`.
    fn tally(&self, index: usize, full: bool) -> &AtomicU32 {
        &self.participant(index).waiting[usize::from(full)]
    }

    /// Decrements the live counter of `role`, never below zero (a peer may
    /// have scribbled on it).
    fn count_down(&self, role: Role) {
        // Release: pairs with the Acquire load in `live_hint`, publishing
        // everything the departing participant did before.
        let _ = self.header().live[role.index()].fetch_update(
            Ordering::Release,
            Ordering::Relaxed,
            |v| v.checked_sub(1),
        );
    }

    /// The number of live participants in `role` (attached, or attaching
    /// now), reaping dead ones (whose processes died without detaching) on
    /// the way: a scan of the table, with a lock probe per participant of
    /// that role.
    pub fn live_count(&self, role: Role) -> u32 {
        let mut live = 0;
        for i in 0..MAX_PARTICIPANTS {
            let p = self.participant(i);
            // Acquire: pairs with the Release CAS publishing ATTACHING, so
            // the role read below is the attacher's.
            let state = p.state.load(Ordering::Acquire);
            if !occupied(state) || Role::from_raw(p.role.load(Ordering::Relaxed)) != Some(role) {
                continue;
            }
            if self.is_alive(i) {
                live += 1;
            } else if !self.read_only {
                self.reap(i, state, role);
            }
        }
        live
    }

    /// Whether the process that created the segment still has it open
    /// (through another open file description than this one).
    pub fn creator_alive(&self) -> bool {
        sys::byte_is_locked(&self.file, CREATOR_LOCK).unwrap_or(true)
    }

    /// Messages buffered in the ring now (a snapshot, for tools).
    pub fn buffered(&self) -> u64 {
        let (base, _) = self.ring_region();
        // SAFETY: the region was validated against the layout when opened
        // and lives as long as `self`; only loads are made.
        unsafe { shmlane_ring::peek_len(base, &self.layout) }
    }

    /// The pid that created the segment (as it recorded it).
    pub fn creator_pid(&self) -> u32 {
        self.header().creator_pid.read()
    }

    /// The header's count of attached participants in `role`, dead ones
    /// included until someone reaps them (and, after a death in the middle
    /// of an attach, possibly one more): one load, a hint. A zero is
    /// confirmed with [`live_count`](Self::live_count) (a participant that
    /// is attaching right now is not counted yet).
    #[inline]
    pub fn live_hint(&self, role: Role) -> u32 {
        // Acquire: pairs with the Release updates in attach/detach/reap, so
        // a sender's pushes before its detach are visible after a 0.
        self.header().live[role.index()].load(Ordering::Acquire)
    }

    /// Whether a participant in `role` ever attached to this segment.
    #[inline]
    pub fn ever_attached(&self, role: Role) -> bool {
        // Acquire: pairs with the Release store in `attach`.
        self.header().seen[role.index()].load(Ordering::Acquire) != 0
    }

    /// Every attached participant, alive or dead, for tools.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        (0..MAX_PARTICIPANTS)
            .filter_map(|i| {
                let p = self.participant(i);
                // Acquire: as in `live_count`.
                let state = p.state.load(Ordering::Acquire);
                occupied(state).then(|| ParticipantInfo {
                    index: i,
                    role: Role::from_raw(p.role.load(Ordering::Relaxed)),
                    pid: p.pid.load(Ordering::Relaxed),
                    alive: self.is_alive(i),
                })
            })
            .collect()
    }

    /// Attaches this process as a `role` participant: takes the kernel lock
    /// that marks it alive and records its pid. With `exclusive`, fails if
    /// another live participant has the same role (SPSC rings).
    ///
    /// # Errors
    ///
    /// [`AttachError`].
    pub fn attach(
        self: &Arc<Self>,
        role: Role,
        exclusive: bool,
    ) -> Result<Attachment, AttachError> {
        if self.read_only {
            return Err(AttachError::ReadOnly);
        }
        let (index, state) = self.claim_slot(role)?;
        let attachment = Attachment {
            seg: Arc::clone(self),
            index,
            role,
            state,
            pid: sys::pid(),
        };
        if exclusive {
            let others = (0..MAX_PARTICIPANTS).filter(|&j| j != index).any(|j| {
                let p = self.participant(j);
                // SeqCst: with the SeqCst exchange that published our own slot
                // this is a store-then-load pair on two locations; SeqCst on
                // both sides means two racing attachers cannot both miss each
                // other (both may back off, which is safe).
                let state = p.state.load(Ordering::SeqCst);
                occupied(state)
                    && Role::from_raw(p.role.load(Ordering::Relaxed)) == Some(role)
                    && self.is_alive(j)
            });
            if others {
                // Dropping the attachment detaches it again.
                return Err(AttachError::RoleTaken { role: role.name() });
            }
        }
        Ok(attachment)
    }

    /// Takes a free slot; returns its index and the state it published.
    fn claim_slot(&self, role: Role) -> Result<(usize, u64), AttachError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (pid, start) = (sys::pid(), sys::start_time(sys::pid()));
        for i in 0..MAX_PARTICIPANTS {
            if *held & (1 << i) != 0 {
                continue;
            }
            // The lock is the ownership: whoever holds it owns slot i, and a
            // slot whose lock is free has no live owner.
            if !sys::try_lock_byte(&self.file, lock_offset(i)).map_err(AttachError::Os)? {
                continue;
            }
            crate::fault::point("attach.locked");
            let p = self.participant(i);
            let h = self.header();
            // 1. Publish the entry as ATTACHING: from here on a scan of the
            //    table finds this participant (alive while its lock is held;
            //    reaped, and its role marked seen, if it dies).
            let attaching = loop {
                // Acquire: sees the previous owner's fields if it is to be reaped.
                let state = p.state.load(Ordering::Acquire);
                if occupied(state) {
                    // The previous owner died holding the slot: reap it first.
                    if let Some(old) = Role::from_raw(p.role.load(Ordering::Relaxed)) {
                        self.reap(i, state, old);
                    } else {
                        let next = ((state >> 8).wrapping_add(1) << 8) | STATUS_FREE;
                        // Relaxed: a garbage role; just clear the slot.
                        let _ = p.state.compare_exchange(
                            state,
                            next,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    continue;
                }
                // Relaxed: published by the Release exchange below.
                p.waiting[0].store(0, Ordering::Relaxed);
                p.waiting[1].store(0, Ordering::Relaxed);
                p.role.store(role.index() as u32, Ordering::Relaxed);
                p.pid.store(pid, Ordering::Relaxed);
                p.start_time.store(start, Ordering::Relaxed);
                let next = ((state >> 8).wrapping_add(1) << 8) | STATUS_ATTACHING;
                // SeqCst (a Release at least): publishes role/pid/start, pairs
                // with Acquire loads of `state` in `live_count` and
                // `participants`, and with the SeqCst loads of the
                // exclusivity check in `attach`.
                if p.state
                    .compare_exchange(state, next, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    break next;
                }
            };
            // 2. Mark the role seen: peers that see it and no count yet
            //    confirm by a scan, which finds this entry.
            // Release: pairs with the Acquire load in `ever_attached`.
            h.seen[role.index()].store(1, Ordering::Release);
            crate::fault::point("attach.attaching");
            // 3. Count it, then say so: only an ATTACHED entry is
            //    decremented when reaped, so the count is never too low.
            // Release: pairs with the Acquire load in `live_hint`.
            h.live[role.index()].fetch_add(1, Ordering::Release);
            crate::fault::point("attach.counted");
            let published = (attaching & !0xff) | STATUS_ATTACHED;
            // SeqCst: as above. Nobody else changes a live owner's entry
            // (reapers need its lock free), so this cannot fail short of a
            // peer scribbling; then the entry stays ATTACHING, which only
            // leaves the count one too high.
            let _ =
                p.state
                    .compare_exchange(attaching, published, Ordering::SeqCst, Ordering::Relaxed);
            crate::fault::point("attach.published");
            *held |= 1 << i;
            return Ok((i, published));
        }
        Err(AttachError::TableFull)
    }

    /// Frees slot `index`, but only from the exact state this attachment
    /// published: if the slot changed hands meanwhile (it cannot, short of
    /// a fork sharing our locks, or a peer scribbling), it is left alone.
    fn detach(&self, index: usize, role: Role, published: u64) {
        let p = self.participant(index);
        let h = self.header();
        let next = ((published >> 8).wrapping_add(1) << 8) | STATUS_FREE;
        // AcqRel: races only with a (mistaken) reaper; one wins.
        if p.state
            .compare_exchange(published, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.count_down(role);
        }
        let _ = sys::unlock_byte(&self.file, lock_offset(index));
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) &= !(1 << index);
        // Blocked peers re-check whether their side is disconnected.
        h.not_empty.0.notify_all();
        h.not_full.0.notify_all();
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.unlink_on_drop && sys::pid() == self.pid {
            let _ = match &self.backend {
                Backend::Shm(n) => sys::shm_unlink(n),
                Backend::File(p) => fs::remove_file(p),
                Backend::Memfd => Ok(()),
            };
        }
    }
}

/// A live participant; detaches (and wakes blocked peers) when dropped.
///
/// It remembers the process that attached: dropped in another process (a
/// child forked without exec that inherited a copy), it does nothing, so
/// the child cannot detach its parent or release the parent's locks.
pub struct Attachment {
    seg: Arc<Segment>,
    index: usize,
    role: Role,
    /// The slot state this attachment published.
    state: u64,
    /// The process that attached.
    pid: u32,
}

impl Attachment {
    /// The segment attached to.
    #[inline]
    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// The role attached as.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Who this participant is, as slots it holds record it: its index in
    /// the participant table and the low 32 bits of its generation
    /// (`generation << 6 | index + 1`, never 0). See
    /// [`Segment::owner_is_dead`].
    pub fn owner_id(&self) -> u64 {
        ((self.state >> 8) & 0xffff_ffff) << 6 | (self.index as u64 + 1)
    }

    /// This participant's tally of threads parked on `not_empty` (or, with
    /// `full`, on `not_full`), to pass to
    /// [`EventCount::wait_tallied`](shmlane_semaphore::EventCount::wait_tallied).
    pub fn waiting(&self, full: bool) -> &AtomicU32 {
        self.seg.tally(self.index, full)
    }

    /// Whether this is the process that attached (false in a forked child).
    pub fn is_own_process(&self) -> bool {
        sys::pid() == self.pid
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if !self.is_own_process() {
            // A forked child's copy: the attachment is the parent's.
            return;
        }
        crate::fault::point("detach.before");
        self.seg.detach(self.index, self.role, self.state);
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("index", &self.index)
            .field("role", &self.role)
            .finish()
    }
}

fn kind_to_raw(kind: RingKind) -> u32 {
    match kind {
        RingKind::Spsc => 1,
        RingKind::Mpmc => 2,
    }
}

fn layout_of(spec: &Spec) -> Result<RingLayout, CreateError> {
    let layout = RingLayout::new(spec.kind, spec.capacity, spec.slot_size, spec.slot_align)
        .map_err(CreateError::Layout)?;
    if layout.region_align() > HEADER_LEN {
        return Err(CreateError::Layout(
            shmlane_ring::LayoutError::BadAlignment {
                align: spec.slot_align,
            },
        ));
    }
    Ok(layout)
}

/// Waits for the creator to publish READY; returns the file length.
fn wait_ready(file: &File, timeout: Duration) -> Result<u64, OpenError> {
    // A creator that has the file but not yet its lock, its length or its
    // header gets this long before it is judged dead.
    const GRACE: Duration = Duration::from_millis(20);
    let start = Instant::now();
    loop {
        let len = file.metadata().map_err(OpenError::Os)?.len();
        if len >= HEADER_LEN as u64 {
            let mut head = [0u8; 16];
            file.read_exact_at(&mut head, 0).map_err(OpenError::Os)?;
            let magic: [u8; 8] = head[..8].try_into().expect("8 bytes");
            let state = u32::from_ne_bytes(head[12..16].try_into().expect("4 bytes"));
            if magic != MAGIC && magic != [0; 8] {
                return Err(OpenError::BadMagic);
            }
            if magic == MAGIC && state == STATE_READY {
                return Ok(len);
            }
            if state != STATE_INIT && state != STATE_READY {
                return Err(OpenError::Corrupted { field: "state" });
            }
        }
        let creator_alive = sys::byte_is_locked(file, CREATOR_LOCK).unwrap_or(true);
        let waited = start.elapsed();
        if (!creator_alive && waited >= GRACE) || waited >= timeout {
            return Err(if len < HEADER_LEN as u64 && !creator_alive {
                OpenError::TooSmall { len }
            } else {
                OpenError::NotReady { creator_alive }
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Checks every layout field against the others and the file length.
fn validate(fixed: &Fixed, file_len: u64) -> Result<RingLayout, OpenError> {
    let kind = match fixed.ring_kind {
        1 => RingKind::Spsc,
        2 => RingKind::Mpmc,
        _ => return Err(OpenError::Corrupted { field: "ring kind" }),
    };
    if fixed.data_offset != HEADER_LEN as u64 {
        return Err(OpenError::LayoutMismatch {
            field: "data offset",
            detail: format!(
                "{} (this build puts the ring at {HEADER_LEN})",
                fixed.data_offset
            ),
        });
    }
    if !fixed.slots.is_power_of_two() {
        return Err(OpenError::LayoutMismatch {
            field: "slot count",
            detail: format!("{} is not a power of two", fixed.slots),
        });
    }
    let to_usize = |v: u64, field| {
        usize::try_from(v).map_err(|_| OpenError::LayoutMismatch {
            field,
            detail: format!("{v} is too large"),
        })
    };
    let layout = RingLayout::new(
        kind,
        fixed.capacity,
        to_usize(fixed.slot_size, "slot size")?,
        to_usize(fixed.slot_align, "slot alignment")?,
    )
    .map_err(|e| OpenError::LayoutMismatch {
        field: "capacity and slot size",
        detail: e.to_string(),
    })?;
    if layout.slots() != fixed.slots {
        return Err(OpenError::LayoutMismatch {
            field: "slot count",
            detail: format!("{} slots for capacity {}", fixed.slots, fixed.capacity),
        });
    }
    let region_end = HEADER_LEN as u64 + layout.region_len() as u64;
    if fixed.schema_len > MAX_SCHEMA_LEN as u64 {
        return Err(OpenError::LayoutMismatch {
            field: "schema length",
            detail: format!(
                "{} bytes (this build reads at most {MAX_SCHEMA_LEN})",
                fixed.schema_len
            ),
        });
    }
    let expected = region_end.checked_add(fixed.schema_len);
    if expected != Some(fixed.total_len) {
        return Err(OpenError::LayoutMismatch {
            field: "total length",
            detail: format!(
                "header says {} bytes, the layout needs {expected:?}",
                fixed.total_len
            ),
        });
    }
    if fixed.schema_offset != region_end {
        return Err(OpenError::LayoutMismatch {
            field: "schema offset",
            detail: format!(
                "{} (the ring region ends at {region_end})",
                fixed.schema_offset
            ),
        });
    }
    if fixed.total_len != file_len {
        return Err(OpenError::LayoutMismatch {
            field: "file length",
            detail: format!("file is {file_len} bytes, header says {}", fixed.total_len),
        });
    }
    Ok(layout)
}

/// Where the named POSIX shared-memory segment `name` lives: `/dev/shm/NAME`.
pub fn shm_path(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name)
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn the_first_differing_line_is_named() {
        let a = "message: R\nstruct `R`: { a, b }\nfield `R.a`: u8\nfield `R.b`: Vec<f32>";
        let b = "message: R\nstruct `R`: { a, b }\nfield `R.a`: u8\nfield `R.b`: Vec<f64>";
        assert_eq!(
            first_difference(a, b),
            "field `R.b`: Vec<f32> here, Vec<f64> in the segment"
        );
        let swapped = "message: R\nstruct `R`: { b, a }\nfield `R.b`: Vec<f32>\nfield `R.a`: u8";
        assert_eq!(
            first_difference(a, swapped),
            "struct `R`: { a, b } here, { b, a } in the segment"
        );
        assert_eq!(
            first_difference("u64", "my::Tick"),
            "`u64` here, `my::Tick` in the segment"
        );
        assert_eq!(
            first_difference("message: R\nx: 1", "message: R"),
            "`x: 1` here, nothing more in the segment"
        );
        assert_eq!(
            first_difference("message: R", "message: R\nx: 1"),
            "nothing more here, `x: 1` in the segment"
        );
        assert_eq!(
            first_difference("a: 1\nb: 2", "a: 1\nc: 2"),
            "`b: 2` here, `c: 2` in the segment"
        );
    }
}
