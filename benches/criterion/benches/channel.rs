//! Criterion: shmlane::bounded against crossbeam_channel::bounded, 1/1, 2/2
//! and 4/4 threads, one million u64 messages, capacity 1024; then
//! crossbeam-channel's own benchmark shapes (every flavor, select) over
//! both crates, 100,000 messages each.

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

fn crossbeam_shapes(c: &mut Criterion) {
    use shmlane_benches::shapes;
    const MESSAGES: usize = 100_000;
    let mut group = c.benchmark_group("crossbeam_shapes");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    for (flavor, shape) in shapes::rows() {
        let label = format!("{flavor:?}_{shape:?}");
        for which in [Impl::Shmlane, Impl::Crossbeam] {
            group.bench_with_input(BenchmarkId::new(which.name(), &label), &(), |b, _| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| shapes::run(which, flavor, shape, MESSAGES))
                        .sum()
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, channels, crossbeam_shapes);
criterion_main!(benches);
