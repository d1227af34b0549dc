//! Binding and connecting the stream transports: FIFOs, Unix sockets, TCP.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

use shmlane_sys::errno::Errno;
use shmlane_sys::fs::{self, FifoEnd};
use shmlane_sys::net::{self, SocketAddrUnix};

use super::error::OpenError;
use super::stream::{StreamRx, StreamTx};

/// Connect attempts are this far apart.
const RETRY: Duration = Duration::from_millis(10);

fn path_error(path: &Path, e: io::Error) -> OpenError {
    match Errno::from_io_error(&e) {
        Some(Errno::ACCESS | Errno::PERM) => OpenError::PermissionDenied { path: path.into() },
        Some(Errno::ISDIR) => OpenError::IsADirectory { path: path.into() },
        Some(Errno::NOENT | Errno::NOTDIR) => OpenError::NoSuchDirectory { path: path.into() },
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

/// Creates the FIFO if missing and opens it for reading. Returns the
/// receiver and whether this call created the FIFO.
pub(crate) fn fifo_bind(path: &Path, max: usize) -> Result<(StreamRx, bool), OpenError> {
    let created = match fs::mkfifo(path, 0o600) {
        Ok(()) => true,
        Err(e) if Errno::from_io_error(&e) == Some(Errno::EXIST) => false,
        Err(e) => return Err(path_error(path, e)),
    };
    check_kind(path, "a FIFO", std::fs::FileType::is_fifo)?;
    let fd = fs::open_fifo(path, FifoEnd::Read).map_err(|e| path_error(path, e))?;
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
            match fs::open_fifo(path, FifoEnd::Write) {
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
                Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::NXIO | Errno::NOENT)) => {}
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

/// The address of the socket at `path`: a path of 1 to
/// [`UNIX_PATH_MAX`](net::UNIX_PATH_MAX) bytes (one with a NUL byte is
/// `InvalidInput`).
fn unix_address(path: &Path) -> Result<SocketAddrUnix, OpenError> {
    let len = path.as_os_str().len();
    if len > net::UNIX_PATH_MAX || len == 0 {
        return Err(OpenError::PathTooLong {
            path: path.into(),
            max: net::UNIX_PATH_MAX,
        });
    }
    Ok(net::unix_address(path)?)
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
    let addr = unix_address(path)?;
    let fd = net::unix_stream()?;
    for attempt in 0..2 {
        match net::bind_unix(&fd, &addr) {
            Ok(()) => break,
            Err(e) if Errno::from_io_error(&e) == Some(Errno::ADDRINUSE) && attempt == 0 => {
                check_kind(path, "a socket", std::fs::FileType::is_socket)?;
                if unix_listened(path) {
                    return Err(OpenError::AddressInUse {
                        address: format!("unix:{}", path.display()),
                    });
                }
                std::fs::remove_file(path).map_err(|e| path_error(path, e))?;
            }
            Err(e) if Errno::from_io_error(&e) == Some(Errno::ADDRINUSE) => {
                return Err(OpenError::AddressInUse {
                    address: format!("unix:{}", path.display()),
                })
            }
            Err(e) => return Err(path_error(path, e)),
        }
    }
    // The backlog holds the senders that connected and are not accepted
    // yet (SOMAXCONN, capped by the kernel at `net.core.somaxconn`).
    net::listen(&fd)?;
    Ok(fd)
}

/// Connects to a Unix stream socket, waiting up to `timeout` for it.
pub(crate) fn unix_connect(
    path: &Path,
    max: usize,
    timeout: Duration,
) -> Result<StreamTx, OpenError> {
    let addr = unix_address(path)?;
    let start = Instant::now();
    loop {
        if check_kind(path, "a socket", std::fs::FileType::is_socket)? {
            let fd = net::unix_stream()?;
            match net::connect_unix(&fd, &addr) {
                Ok(()) => return Ok(StreamTx::new(fd, true, max)?),
                // Refused: a stale file; EAGAIN: backlog full.
                Err(e)
                    if matches!(
                        Errno::from_io_error(&e),
                        Some(Errno::CONNREFUSED | Errno::AGAIN | Errno::NOENT)
                    ) => {}
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
    let listener = TcpListener::bind((host, port)).map_err(|e| match Errno::from_io_error(&e) {
        Some(Errno::ADDRINUSE) => OpenError::PortInUse { port },
        Some(Errno::ACCESS) => OpenError::PermissionDenied {
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
        match net::accept(listener) {
            Ok(fd) => {
                if tcp {
                    let _ = net::set_nodelay(&fd);
                }
                return StreamRx::new(fd, false, max).map(Some);
            }
            // A connection reset while it waited: try the next one.
            Err(e) if Errno::from_io_error(&e) == Some(Errno::CONNABORTED) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
