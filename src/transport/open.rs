//! Binding and connecting the stream transports: FIFOs, Unix sockets, TCP.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

use shmlane_sys::errno::{cvt, cvt_retry};

use super::error::OpenError;
use super::stream::{StreamRx, StreamTx};
use super::sys::{self, errno, owned};

/// Connect attempts are this far apart.
const RETRY: Duration = Duration::from_millis(10);

fn path_error(path: &Path, e: io::Error) -> OpenError {
    match errno(&e) {
        libc::EACCES | libc::EPERM => OpenError::PermissionDenied { path: path.into() },
        libc::EISDIR => OpenError::IsADirectory { path: path.into() },
        libc::ENOENT | libc::ENOTDIR => OpenError::NoSuchDirectory { path: path.into() },
        _ => OpenError::Os(e),
    }
}

/// Checks that an existing `path` is of the kind wanted; `Ok(false)` if
/// it does not exist.
fn check_kind(
    path: &Path,
    want: &'static str,
    is: fn(&std::fs::FileType) -> bool,
) -> Result<bool, OpenError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(OpenError::IsADirectory { path: path.into() }),
        Ok(m) if !is(&m.file_type()) => Err(OpenError::WrongFileType {
            path: path.into(),
            expected: want,
        }),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(path_error(path, e)),
    }
}

fn open_path(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = sys::c_path(path)?;
    // SAFETY: `c` is NUL-terminated; open returns a new fd or -1.
    let fd = cvt_retry(|| unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    Ok(owned(fd))
}

/// Creates the FIFO if missing and opens it for reading. Returns the
/// receiver and whether this call created the FIFO.
pub(crate) fn fifo_bind(path: &Path, max: usize) -> Result<(StreamRx, bool), OpenError> {
    let c = sys::c_path(path)?;
    // SAFETY: `c` is NUL-terminated.
    let created = match cvt(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }) {
        Ok(_) => true,
        Err(e) if errno(&e) == libc::EEXIST => false,
        Err(e) => return Err(path_error(path, e)),
    };
    check_kind(path, "a FIFO", std::fs::FileType::is_fifo)?;
    let fd = open_path(path, libc::O_RDONLY | libc::O_NONBLOCK).map_err(|e| path_error(path, e))?;
    shmlane_sys::fd::grow_pipe(&fd, super::DEFAULT_MAX_FRAME);
    Ok((StreamRx::new(fd, true, max)?, created))
}

/// Why a FIFO refuses a second sender.
const FIFO_TAKEN: &str = "a FIFO takes one sender at a time (writers' frames larger than \
                          PIPE_BUF would interleave); use unix:PATH for several senders";

/// Opens the FIFO for writing once a reader has it open, and takes an
/// exclusive `flock` on it: a second sender is refused with
/// [`OpenError::AlreadyConnected`] while the first lives.
pub(crate) fn fifo_connect(
    path: &Path,
    max: usize,
    timeout: Duration,
) -> Result<StreamTx, OpenError> {
    let start = Instant::now();
    loop {
        if check_kind(path, "a FIFO", std::fs::FileType::is_fifo)? {
            match open_path(path, libc::O_WRONLY | libc::O_NONBLOCK) {
                Ok(fd) => {
                    // One sender at a time: two writers' frames larger
                    // than PIPE_BUF would interleave. The lock belongs to
                    // this open file description: it goes when the sender
                    // closes it or its process dies.
                    if !shmlane_sys::lock::try_flock(&fd)? {
                        return Err(OpenError::AlreadyConnected {
                            address: format!("fifo:{}", path.display()),
                            hint: FIFO_TAKEN,
                        });
                    }
                    shmlane_sys::fd::grow_pipe(&fd, super::DEFAULT_MAX_FRAME);
                    return Ok(StreamTx::new(fd, false, max)?);
                }
                // ENXIO: no reader yet. ENOENT: removed meanwhile.
                Err(e) if matches!(errno(&e), libc::ENXIO | libc::ENOENT) => {}
                Err(e) => return Err(path_error(path, e)),
            }
        }
        if start.elapsed() >= timeout {
            return Err(OpenError::NobodyListens {
                address: format!("fifo:{}", path.display()),
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(RETRY);
    }
}

fn sockaddr_un(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), OpenError> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    let max = sa.sun_path.len() - 1;
    if bytes.len() > max || bytes.is_empty() {
        return Err(OpenError::PathTooLong {
            path: path.into(),
            max,
        });
    }
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

fn unix_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; returns a new fd or -1.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    Ok(owned(fd))
}

/// Whether some socket listens on `path`, from `/proc/net/unix` (asking by
/// connecting would hand a live receiver a bogus sender).
fn unix_listened(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return true; // cannot tell: assume live, never remove
    };
    let want = path.to_string_lossy();
    table.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is
        // __SO_ACCEPTCON (listening).
        cols.len() >= 8
            && cols[7] == want
            && u32::from_str_radix(cols[3], 16).is_ok_and(|f| f & 0x1_0000 != 0)
    })
}

/// Binds and listens on a Unix stream socket at `path`, removing a stale
/// socket file nobody listens on.
pub(crate) fn unix_bind(path: &Path) -> Result<OwnedFd, OpenError> {
    let (sa, len) = sockaddr_un(path)?;
    let fd = unix_socket()?;
    for attempt in 0..2 {
        // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
        match cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        }) {
            Ok(_) => break,
            Err(e) if errno(&e) == libc::EADDRINUSE && attempt == 0 => {
                check_kind(path, "a socket", std::fs::FileType::is_socket)?;
                if unix_listened(path) {
                    return Err(OpenError::AddressInUse {
                        address: format!("unix:{}", path.display()),
                    });
                }
                std::fs::remove_file(path).map_err(|e| path_error(path, e))?;
            }
            Err(e) if errno(&e) == libc::EADDRINUSE => {
                return Err(OpenError::AddressInUse {
                    address: format!("unix:{}", path.display()),
                })
            }
            Err(e) => return Err(path_error(path, e)),
        }
    }
    // SAFETY: listen on our socket; no pointers. The backlog holds the
    // senders that connected and are not accepted yet (the kernel caps it
    // at `net.core.somaxconn`).
    cvt(unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) })?;
    Ok(fd)
}

/// Connects to a Unix stream socket, waiting up to `timeout` for it.
pub(crate) fn unix_connect(
    path: &Path,
    max: usize,
    timeout: Duration,
) -> Result<StreamTx, OpenError> {
    let (sa, len) = sockaddr_un(path)?;
    let start = Instant::now();
    loop {
        if check_kind(path, "a socket", std::fs::FileType::is_socket)? {
            let fd = unix_socket()?;
            // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
            let r = cvt_retry(|| unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_un).cast(),
                    len,
                )
            });
            match r {
                Ok(_) => return Ok(StreamTx::new(fd, true, max)?),
                // Refused: a stale file; EAGAIN: backlog full.
                Err(e) if matches!(errno(&e), libc::ECONNREFUSED | libc::EAGAIN | libc::ENOENT) => {
                }
                Err(e) => return Err(path_error(path, e)),
            }
        }
        if start.elapsed() >= timeout {
            return Err(OpenError::NobodyListens {
                address: format!("unix:{}", path.display()),
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(RETRY);
    }
}

/// Binds a TCP listener (std sets `SO_REUSEADDR`).
pub(crate) fn tcp_bind(host: &str, port: u16) -> Result<(OwnedFd, SocketAddr), OpenError> {
    let listener = TcpListener::bind((host, port)).map_err(|e| match errno(&e) {
        libc::EADDRINUSE => OpenError::PortInUse { port },
        libc::EACCES => OpenError::PermissionDenied {
            path: format!("tcp port {port} (ports below 1024 need privileges)").into(),
        },
        _ => OpenError::Os(e),
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    Ok((listener.into(), local))
}

/// Connects with `TCP_NODELAY`, retrying refused connections up to `timeout`.
pub(crate) fn tcp_connect(
    host: &str,
    port: u16,
    max: usize,
    timeout: Duration,
) -> Result<StreamTx, OpenError> {
    let start = Instant::now();
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    loop {
        for addr in &addrs {
            let left = timeout.saturating_sub(start.elapsed()).max(RETRY);
            match TcpStream::connect_timeout(addr, left) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(StreamTx::new(s.into(), true, max)?);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if start.elapsed() >= timeout {
            return Err(OpenError::NobodyListens {
                address: format!("tcp:{host}:{port}"),
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(RETRY);
    }
}

/// Accepts a connection waiting on a listening socket, without waiting;
/// `Ok(None)` when none is waiting.
pub(crate) fn accept(listener: &OwnedFd, tcp: bool, max: usize) -> io::Result<Option<StreamRx>> {
    loop {
        // SAFETY: null address buffers: we do not ask who connected.
        let r = cvt_retry(|| unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        });
        match r {
            Ok(fd) => {
                let fd = owned(fd);
                if tcp {
                    let one: libc::c_int = 1;
                    // SAFETY: `one` is a live c_int of the size passed.
                    let _ = unsafe {
                        libc::setsockopt(
                            fd.as_raw_fd(),
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            (&one as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                        )
                    };
                }
                return StreamRx::new(fd, false, max).map(Some);
            }
            // A connection reset while it waited: try the next one.
            Err(e) if errno(&e) == libc::ECONNABORTED => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
