//! How long `create` takes for 1 MiB, 64 MiB and 1 GiB channels (1 KiB
//! messages), median of 5. Run it on a tmpfs large enough, e.g. in a
//! private mount namespace:
//!
//! ```text
//! cargo build --release --example create_time
//! unshare -m sh -c 'mount --make-rprivate / && mount -t tmpfs -o size=2g tmpfs /dev/shm \
//!     && target/release/examples/create_time'
//! ```

use std::time::{Duration, Instant};

use shmlane::ipc::{Builder, Bytes};

fn main() {
    for (label, capacity) in [
        ("1 MiB", 1usize << 10),
        ("64 MiB", 1 << 16),
        ("1 GiB", 1 << 20),
    ] {
        let mut times: Vec<Duration> = (0..5)
            .map(|i| {
                let name = format!("shm:create-time-{}-{i}", std::process::id());
                let start = Instant::now();
                let chan = Builder::new(&name)
                    .unwrap()
                    .capacity(capacity)
                    .message_size(1024)
                    .create::<Bytes>()
                    .unwrap();
                let took = start.elapsed();
                drop(chan);
                took
            })
            .collect();
        times.sort();
        println!(
            "{label:>7}: {:?} (median of 5; min {:?}, max {:?})",
            times[2], times[0], times[4]
        );
    }
}
