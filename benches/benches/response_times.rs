//! chatbox-core's [`ResponseTimes`]: `record` on a full window of 100 samples (the steady state
//! of every session that has had 100 replies: each record overwrites the oldest sample).

use std::hint::black_box;
use std::time::Duration;

use chatbox_core::response_times::{ResponseTimes, DEFAULT_CAPACITY};
use criterion::Criterion;

fn response_times(c: &mut Criterion) {
    let mut window = ResponseTimes::new(DEFAULT_CAPACITY);
    for ms in 0..DEFAULT_CAPACITY as u64 {
        window.record(Duration::from_millis(500 + ms));
    }
    assert_eq!(window.len(), DEFAULT_CAPACITY, "the window must start full");
    let mut group = c.benchmark_group("response_times");
    let mut sample = 0u64;
    group.bench_function("record_full_window_100", |b| {
        b.iter(|| {
            sample = (sample + 7) % 5_000;
            window.record(black_box(Duration::from_millis(sample)));
        });
    });
    group.finish();
    black_box(window.max());
}

fn main() {
    chatbox_benches::run(response_times);
}
