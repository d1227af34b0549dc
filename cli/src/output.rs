//! Writing to stdout without ever panicking on a closed pipe.
//!
//! Rust starts every program with SIGPIPE ignored, so a write to a pipe
//! whose reader has gone (`shmlane ls | head -1`) fails with `EPIPE`
//! instead of killing the process; `print!` would then panic (status
//! 101). Every command writes through here instead: `EPIPE` becomes
//! [`StdoutClosed`], which `main` turns into a quiet status 0 after the
//! command has cleaned up on its way out, as `recv` must (it removes the
//! segment or FIFO it created).

use std::fmt;
use std::io::{self, BufWriter, Write};

/// The reader of stdout went away: a quiet success.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// An error writing stdout: [`StdoutClosed`] for a closed pipe.
pub fn out_error(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("writing stdout")
    }
}

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(out_error)
}

/// Buffered stdout, a line at a time.
pub struct Out<W: Write>(BufWriter<W>);

/// Bytes buffered for stdout before a write.
const WRITE_BUF: usize = 64 * 1024;

impl Out<io::StdoutLock<'static>> {
    /// Buffered, locked stdout.
    pub fn stdout() -> Self {
        Out(BufWriter::with_capacity(WRITE_BUF, io::stdout().lock()))
    }
}

impl<W: Write> Out<W> {
    /// `bytes` and a newline.
    pub fn line(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let w = &mut self.0;
        w.write_all(bytes)
            .and_then(|()| w.write_all(b"\n"))
            .map_err(out_error)
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.0.flush().map_err(out_error)
    }
}
