//! POSIX message queues: `/dev/mqueue/NAME`.
//!
//! Names are given without the leading `/`, as in [`shm`](crate::shm).
//! On Linux a queue descriptor (`mqd_t`) is a file descriptor: it is
//! handed out as an `OwnedFd` (closing it is `mq_close`), and it polls
//! readable when a message waits and writable when there is room. Every
//! queue is opened non-blocking and close-on-exec.
//!
//! On nix, but for [`receive`], which receives into a `Vec`'s spare
//! capacity through libc: nix's `mq_receive` takes an initialised slice,
//! which would cost zeroing a whole message size (up to `msgsize_max`)
//! for each message received.

use std::ffi::CString;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use nix::mqueue::{MQ_OFlag, MqAttr, MqdT};
use nix::sys::stat::Mode;

use crate::errno::{cvt_retry, retry};

/// `/NAME` as a C string; `InvalidInput` for a name with a NUL byte.
fn queue_name(name: &str) -> io::Result<CString> {
    crate::c_string(format!("/{name}").as_bytes())
}

/// Takes ownership of the queue `mq_open` returned.
fn owned(q: MqdT) -> OwnedFd {
    // SAFETY: on Linux an `mqd_t` is a descriptor; `into_raw_fd` gives up
    // the one `mq_open` just returned, which nothing else owns, and
    // closing it (`OwnedFd`'s drop) is what `mq_close` does.
    unsafe { OwnedFd::from_raw_fd(q.into_raw_fd()) }
}

/// Runs `f` on nix's view of the queue `q`.
fn with_mqd<T>(q: impl AsFd, f: impl FnOnce(&MqdT) -> T) -> T {
    // SAFETY: on Linux an `mqd_t` is the descriptor itself. The view is
    // never dropped (`MqdT` would not close it anyway) and lives only
    // while `q` borrows the descriptor; a descriptor that is not a queue
    // makes the calls fail with `EBADF`.
    let view = ManuallyDrop::new(unsafe { MqdT::from_raw_fd(q.as_fd().as_raw_fd()) });
    f(&view)
}

/// A message-queue attribute value, saturating.
fn attr_value(n: usize) -> nix::mqueue::mq_attr_member_t {
    n.try_into().unwrap_or(nix::mqueue::mq_attr_member_t::MAX)
}

/// Creates the queue `name` for receiving (`O_RDONLY | O_CREAT |
/// O_EXCL`), holding up to `max_messages` messages of up to
/// `message_size` bytes, with `mode` (through the umask); across `EINTR`.
///
/// # Errors
///
/// The OS error: `EEXIST` when the name exists, `EINVAL` for sizes of 0 or
/// above the limits in `/proc/sys/fs/mqueue` (for an unprivileged
/// process), `EACCES`, `EMFILE`, `ENOSPC` (`queues_max`)...;
/// `InvalidInput` for a name with a NUL byte.
pub fn create(
    name: &str,
    max_messages: usize,
    message_size: usize,
    mode: u32,
) -> io::Result<OwnedFd> {
    let name = queue_name(name)?;
    let flags = MQ_OFlag::O_RDONLY
        | MQ_OFlag::O_CREAT
        | MQ_OFlag::O_EXCL
        | MQ_OFlag::O_NONBLOCK
        | MQ_OFlag::O_CLOEXEC;
    let attr = MqAttr::new(0, attr_value(max_messages), attr_value(message_size), 0);
    let mode = Mode::from_bits_truncate(mode);
    let q = retry(|| {
        Ok(nix::mqueue::mq_open(
            name.as_c_str(),
            flags,
            mode,
            Some(&attr),
        )?)
    })?;
    Ok(owned(q))
}

/// Opens the existing queue `name` for sending (`O_WRONLY`), across
/// `EINTR`.
///
/// # Errors
///
/// The OS error: `ENOENT` when there is none, `EACCES`, `EMFILE`...;
/// `InvalidInput` for a name with a NUL byte.
pub fn open_for_sending(name: &str) -> io::Result<OwnedFd> {
    let name = queue_name(name)?;
    let flags = MQ_OFlag::O_WRONLY | MQ_OFlag::O_NONBLOCK | MQ_OFlag::O_CLOEXEC;
    // Without O_CREAT, nix passes neither mode nor attributes.
    let q = retry(|| {
        Ok(nix::mqueue::mq_open(
            name.as_c_str(),
            flags,
            Mode::empty(),
            None,
        )?)
    })?;
    Ok(owned(q))
}

/// Removes the name `name`; processes that have the queue open keep it.
///
/// # Errors
///
/// The OS error (`ENOENT` when there is no such name, `EACCES`);
/// `InvalidInput` for a name with a NUL byte.
pub fn unlink(name: &str) -> io::Result<()> {
    let name = queue_name(name)?;
    Ok(nix::mqueue::mq_unlink(name.as_c_str())?)
}

/// The largest message the queue `q` takes (`mq_getattr`'s
/// `mq_msgsize`).
///
/// # Errors
///
/// The OS error (`EBADF` for a descriptor that is not a queue).
pub fn message_size(q: impl AsFd) -> io::Result<usize> {
    let attr = with_mqd(q, nix::mqueue::mq_getattr)?;
    Ok(usize::try_from(attr.msgsize()).unwrap_or(0))
}

/// Queues `message` on `q` with priority 0, across `EINTR`.
///
/// # Errors
///
/// The OS error: `EAGAIN` when a non-blocking queue is full, `EMSGSIZE`
/// for a message above the queue's message size, `EBADF`...
pub fn send(q: impl AsFd, message: &[u8]) -> io::Result<()> {
    with_mqd(q, |q| retry(|| Ok(nix::mqueue::mq_send(q, message, 0)?)))
}

/// Takes the oldest message of the highest priority from `q` into `buf`
/// (cleared first; its capacity is grown to `capacity`, which must be at
/// least the queue's message size), across `EINTR`; returns its length.
///
/// # Errors
///
/// The OS error: `EAGAIN` when a non-blocking queue is empty, `EMSGSIZE`
/// for a `capacity` below the queue's message size, `EBADF`...
pub fn receive(q: impl AsFd, buf: &mut Vec<u8>, capacity: usize) -> io::Result<usize> {
    buf.clear();
    buf.reserve(capacity);
    let spare = buf.spare_capacity_mut();
    let q = q.as_fd().as_raw_fd();
    let mut priority = 0;
    // SAFETY: `spare` is writable memory of at least `capacity` bytes,
    // and mq_receive writes at most `capacity`; `priority` is a live
    // local.
    let n = cvt_retry(|| unsafe {
        libc::mq_receive(q, spare.as_mut_ptr().cast(), capacity, &mut priority)
    })?;
    // Not negative: cvt_retry took the -1.
    let n = n as usize;
    // SAFETY: mq_receive initialised the first `n` bytes of the spare
    // capacity of the empty `buf`.
    unsafe { buf.set_len(n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::{poll_one, PollFlags};
    use std::time::Instant;

    /// Removes the queue when dropped, even if the test fails.
    struct Unlink(String);

    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = unlink(&self.0);
        }
    }

    #[test]
    fn messages_keep_their_boundaries() {
        let name = shmlane_testkit::unique("sys-mq");
        let rx = create(&name, 2, 16, 0o600).unwrap();
        let _unlink = Unlink(name.clone());
        let e = create(&name, 2, 16, 0o600).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        let tx = open_for_sending(&name).unwrap();
        assert_eq!(message_size(&tx).unwrap(), 16);
        assert_eq!(message_size(&rx).unwrap(), 16);
        let now = Some(Instant::now());
        assert!(poll_one(&rx, PollFlags::IN, now).unwrap().is_empty());

        let mut buf = b"old".to_vec();
        let e = receive(&rx, &mut buf, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        send(&tx, b"one").unwrap();
        send(&tx, b"").unwrap();
        let e = send(&tx, b"three").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "two at most");
        let e = send(&tx, &[0; 17]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
        assert!(poll_one(&rx, PollFlags::IN, now)
            .unwrap()
            .contains(PollFlags::IN));
        let e = receive(&rx, &mut buf, 15).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
        assert_eq!(receive(&rx, &mut buf, 16).unwrap(), 3);
        assert_eq!(buf, b"one");
        assert_eq!(receive(&rx, &mut buf, 16).unwrap(), 0);
        assert!(buf.is_empty());
        // Each end has its direction only.
        assert_eq!(
            send(&rx, b"x").unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        assert_eq!(
            receive(&tx, &mut buf, 16).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        for q in [&rx, &tx] {
            let flags = rustix::io::fcntl_getfd(q).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        }

        unlink(&name).unwrap();
        assert_eq!(
            open_for_sending(&name).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert_eq!(
            unlink(&name).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert_eq!(
            unlink("a\0b").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
