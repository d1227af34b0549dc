//! Stream sockets: Unix-domain sockets at a path, listening and accepting
//! without waiting, `TCP_NODELAY`, and vectored sends that never raise
//! `SIGPIPE`.
//!
//! Every descriptor is made non-blocking and close-on-exec at once
//! (`SOCK_NONBLOCK | SOCK_CLOEXEC`), with no window in which a child
//! spawned by another thread could inherit it.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use rustix::net::SocketAddrUnix;
use rustix::net::{AddressFamily, SendAncillaryBuffer, SendFlags, SocketFlags, SocketType};

use crate::errno::retry;

/// The longest path a Unix-domain socket address holds: `sun_path` less
/// its terminating NUL (107 bytes on Linux).
pub const UNIX_PATH_MAX: usize =
    std::mem::size_of::<libc::sockaddr_un>() - std::mem::size_of::<libc::sa_family_t>() - 1;

/// The backlog [`listen`] asks for: `SOMAXCONN`, which the kernel caps
/// at `net.core.somaxconn`.
const BACKLOG: i32 = libc::SOMAXCONN;

/// The address of the Unix-domain socket at `path`.
///
/// # Errors
///
/// `InvalidInput` for an empty path (which would name an abstract or
/// unnamed address, not a file) or one with a NUL byte;
/// `ENAMETOOLONG` for one longer than [`UNIX_PATH_MAX`].
pub fn unix_address(path: &Path) -> io::Result<SocketAddrUnix> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    if bytes.len() > UNIX_PATH_MAX {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let path = crate::c_string(bytes)?;
    Ok(SocketAddrUnix::new(path.as_c_str())?)
}

/// A Unix-domain stream socket, non-blocking and close-on-exec.
///
/// # Errors
///
/// The OS error of `socket` (`EMFILE`, `ENFILE`...).
pub fn unix_stream() -> io::Result<OwnedFd> {
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        flags,
        None,
    )?)
}

/// Binds `socket` to `addr`, which creates the socket file. `EINTR` is
/// not retried.
///
/// # Errors
///
/// The OS error: `EADDRINUSE` when the path exists (a live socket, a
/// stale one or another file), `EACCES`, `ENOENT`/`ENOTDIR` for a missing
/// directory...
pub fn bind_unix(socket: impl AsFd, addr: &SocketAddrUnix) -> io::Result<()> {
    Ok(rustix::net::bind(socket, addr)?)
}

/// Listens on a bound `socket`, with a backlog of `SOMAXCONN` (the senders
/// that connected and are not accepted yet; the kernel caps it at
/// `net.core.somaxconn`).
///
/// # Errors
///
/// The OS error (`EADDRINUSE`, `EOPNOTSUPP`...).
pub fn listen(socket: impl AsFd) -> io::Result<()> {
    Ok(rustix::net::listen(socket, BACKLOG)?)
}

/// Connects `socket` to the Unix-domain socket at `addr`, across `EINTR`.
///
/// # Errors
///
/// The OS error: `ECONNREFUSED` when nobody listens there (a stale
/// file), `EAGAIN` when a non-blocking socket finds the listener's
/// backlog full, `ENOENT`, `EACCES`...
pub fn connect_unix(socket: impl AsFd, addr: &SocketAddrUnix) -> io::Result<()> {
    retry(|| Ok(rustix::net::connect(socket.as_fd(), addr)?))
}

/// Accepts a connection waiting on the listening `socket`
/// (`accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`, without asking who
/// connected), across `EINTR`; the new descriptor is non-blocking and
/// close-on-exec.
///
/// # Errors
///
/// The OS error: `EAGAIN` when none is waiting on a non-blocking socket,
/// `ECONNABORTED` for a connection reset while it waited, `EMFILE`...
pub fn accept(socket: impl AsFd) -> io::Result<OwnedFd> {
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    retry(|| Ok(rustix::net::accept_with(socket.as_fd(), flags)?))
}

/// Turns Nagle's algorithm off on a TCP `socket` (`TCP_NODELAY`), so
/// small frames go out at once.
///
/// # Errors
///
/// The OS error (`ENOPROTOOPT` for a socket that is not TCP...).
pub fn set_nodelay(socket: impl AsFd) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_tcp_nodelay(socket, true)?)
}

/// One `sendmsg` of `bufs` on a connected `socket` with `MSG_NOSIGNAL`, so
/// a peer that is gone gives `EPIPE` and never raises `SIGPIPE`, across
/// `EINTR`; returns the bytes sent, which may be fewer than given (a
/// short write).
///
/// # Errors
///
/// The OS error: `EAGAIN` when a non-blocking socket is full, `EPIPE`,
/// `ECONNRESET`...
pub fn send_vectored(socket: impl AsFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    retry(|| {
        let mut no_control = SendAncillaryBuffer::default();
        Ok(rustix::net::sendmsg(
            socket.as_fd(),
            bufs,
            &mut no_control,
            SendFlags::NOSIGNAL,
        )?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd::read;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(shmlane_testkit::unique(tag));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    /// Whether `f` left SIGPIPE pending on this thread, run with SIGPIPE
    /// blocked (a pending one is dropped when the old mask comes back,
    /// since the Rust runtime ignores SIGPIPE).
    fn sigpipe_pending_after(f: impl FnOnce()) -> bool {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset; the
        // mask calls read and write only these locals.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old), 0);
            f();
            assert_eq!(libc::sigpending(&mut pending), 0);
            let raised = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()),
                0
            );
            raised
        }
    }

    #[test]
    fn addresses_check_their_paths() {
        assert_eq!(UNIX_PATH_MAX, 107);
        assert!(unix_address(Path::new(&"a".repeat(UNIX_PATH_MAX))).is_ok());
        let e = unix_address(Path::new(&"a".repeat(UNIX_PATH_MAX + 1))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
        let e = unix_address(Path::new("")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = unix_address(Path::new("a\0b")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn unix_sockets_connect_accept_and_send() {
        use rustix::io::{fcntl_getfd, FdFlags};
        let dir = temp_dir("sys-net");
        let addr = unix_address(&dir.join("s")).unwrap();
        let listener = unix_stream().unwrap();
        // Nobody listens yet.
        let early = unix_stream().unwrap();
        let e = connect_unix(&early, &addr).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        bind_unix(&listener, &addr).unwrap();
        let e = connect_unix(&early, &addr).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
        listen(&listener).unwrap();
        let e = accept(&listener).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let other = unix_stream().unwrap();
        let e = bind_unix(&other, &addr).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));

        let tx = unix_stream().unwrap();
        connect_unix(&tx, &addr).unwrap();
        let rx = accept(&listener).unwrap();
        for fd in [&listener, &tx, &rx] {
            assert!(fcntl_getfd(fd).unwrap().contains(FdFlags::CLOEXEC));
            let fl = rustix::fs::fcntl_getfl(fd).unwrap();
            assert!(fl.contains(rustix::fs::OFlags::NONBLOCK));
        }
        let parts = [IoSlice::new(b"he"), IoSlice::new(b"llo")];
        assert_eq!(send_vectored(&tx, &parts).unwrap(), 5);
        let mut buf = [0u8; 8];
        assert_eq!(read(&rx, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        // The peer is gone: EPIPE, and SIGPIPE is not even raised. With
        // SIGPIPE blocked in this thread, one raised would stay pending
        // (blocked signals are never discarded as ignored); a pipe's
        // writev shows that it would.
        drop(rx);
        let pending = sigpipe_pending_after(|| {
            let e = send_vectored(&tx, &parts).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
        });
        assert!(!pending, "MSG_NOSIGNAL");
        let pending = sigpipe_pending_after(|| {
            let (r, w) = crate::fd::pipe().unwrap();
            drop(r);
            let e = crate::fd::write_vectored(&w, &parts).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
        });
        assert!(pending, "the check can see a SIGPIPE");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tcp_sockets_take_nodelay() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let s = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        set_nodelay(&s).unwrap();
        assert!(s.nodelay().unwrap());
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(set_nodelay(&a).is_err());
    }
}
