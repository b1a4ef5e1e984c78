//! Micro-benchmarks of the pure folds: how fast the projection code itself folds events, without
//! any I/O. `cargo bench --bench folds`.

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use projections::events::*;
use projections::ids::*;
use projections::Projection;

const PACKAGES: usize = 100;
const TASKS: usize = 1_000;
const REPORTS: usize = 100_000;
const GRANT_BYTES: u64 = 1 << 40;

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

/// A realistic ledger: packages, tasks, then many traffic reports spread over the tasks.
fn ledger() -> Vec<Event> {
    let mut events = Vec::with_capacity(PACKAGES + TASKS + REPORTS);
    for p in 0..PACKAGES {
        events.push(Event::OrderCreated(OrderCreated {
            instance_id: InstanceId::parse(format!("biz-{p}")).unwrap(),
            jd_pin: JdPin::parse(format!("pin-{}", p % 17)).unwrap(),
            order_id: Some(OrderId::parse(format!("order-{p}")).unwrap()),
            order_number: None,
            service_code: "dts".into(),
            sku_id: SkuId::parse("FW_GOODS-500232-1").unwrap(),
            sku_name: "DTS 1TB".into(),
            sku_bytes: Bytes::new(GRANT_BYTES).unwrap(),
            units: 1,
            bytes_granted: Bytes::new(GRANT_BYTES).unwrap(),
            unit_price: "1000.00".parse().unwrap(),
            amount: "1000.00".parse().unwrap(),
            currency: "CNY".into(),
            expires_at: None,
            template: None,
        }));
    }
    for t in 0..TASKS {
        events.push(Event::TaskCreated(TaskCreated {
            task_id: TaskId::parse(format!("task-{t}")).unwrap(),
            instance_id: InstanceId::parse(format!("biz-{}", t % PACKAGES)).unwrap(),
        }));
    }
    let mut remaining = vec![GRANT_BYTES; PACKAGES];
    for r in 0..REPORTS {
        let t = (r * 7919) % TASKS;
        let p = t % PACKAGES;
        let bytes = 1_000_000 + (r as u64 % 1000) * 1000;
        remaining[p] -= bytes;
        events.push(Event::TrafficConsumed(TrafficConsumed {
            task_id: TaskId::parse(format!("task-{t}")).unwrap(),
            report_id: ReportId::parse(format!("r-{r}")).unwrap(),
            instance_id: InstanceId::parse(format!("biz-{p}")).unwrap(),
            bytes: Bytes::new(bytes).unwrap(),
            period_start: None,
            period_end: at(),
            action: ReportAction::Continue,
            reason: None,
            bytes_remaining: Bytes::new(remaining[p]).unwrap(),
            bytes_overage: Bytes::ZERO,
        }));
    }
    events
}

fn fold(c: &mut Criterion) {
    let events = ledger();
    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("whole_ledger", |b| {
        b.iter_batched(
            Projection::default,
            |mut projection| {
                for event in &events {
                    projection.apply(event, at()).unwrap();
                }
                projection
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    // As replay reads them: the JSON text of each stored payload.
    let payloads: Vec<(String, i32, String, Vec<u8>)> = events
        .iter()
        .map(|e| {
            (
                e.event_type().to_owned(),
                e.event_version(),
                e.stream_id(),
                serde_json::to_vec(&e.payload()).unwrap(),
            )
        })
        .collect();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    group.bench_function("payloads", |b| {
        b.iter(|| {
            for (event_type, version, stream, payload) in &payloads {
                Event::decode_json(event_type, *version, stream, payload).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, fold);
criterion_main!(benches);
