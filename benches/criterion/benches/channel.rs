//! Criterion: shmlane::bounded against crossbeam_channel::bounded, 1/1, 2/2
//! and 4/4 threads, one million u64 messages, capacity 1024.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmlane_benches::{default_configs, run, Impl};

fn channels(c: &mut Criterion) {
    let mut group = c.benchmark_group("in_process_throughput");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for config in default_configs() {
        group.throughput(Throughput::Elements(config.messages));
        let label = format!("{}p{}c", config.producers, config.consumers);
        for which in [Impl::Shmlane, Impl::Crossbeam] {
            group.bench_with_input(
                BenchmarkId::new(which.name(), &label),
                &config,
                |b, &cfg| {
                    b.iter_custom(|iters| (0..iters).map(|_| run(which, cfg)).sum());
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, channels);
criterion_main!(benches);
