//! The broker's metrics: the Prometheus recorder every layer's `metrics` calls
//! reach, and the figures read from the stores at each scrape.

use std::sync::Arc;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use strata_stream::StreamStore;
use strata_stream::object_stores::{ObjectStoreStats, RequestKind};

/// Latency buckets, seconds: 0.5 ms to 10 s.
const SECONDS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Size buckets, bytes: 1 KiB to 64 MiB.
const BYTES: &[f64] =
    &[1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0];

/// Installs the process-wide recorder (histograms with the buckets above).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES)?
        .install_recorder()?;
    Ok(handle)
}

/// Publishes the stores' live figures, then renders everything.
pub fn render(
    handle: &PrometheusHandle,
    streams: Option<&Arc<StreamStore>>,
    objects: &ObjectStoreStats,
) -> String {
    if let Some(store) = streams {
        let s = store.stats();
        gauge!("strata_streams").set(s.streams as f64);
        gauge!("strata_object_ranges").set(s.ranges as f64);
        gauge!("strata_objects").set(s.objects as f64);
        gauge!("strata_upload_backlog_bytes").set(s.upload_backlog_bytes as f64);
        gauge!("strata_cache_used_bytes", "cache" => "tail").set(s.tail_cache_bytes as f64);
        gauge!("strata_cache_used_bytes", "cache" => "block").set(s.block_cache_bytes as f64);
        for (cache, (hits, misses)) in [("tail", s.tail_cache_lookups), ("block", s.block_cache_lookups)] {
            counter!("strata_cache_lookups_total", "cache" => cache, "result" => "hit").absolute(hits);
            counter!("strata_cache_lookups_total", "cache" => cache, "result" => "miss").absolute(misses);
            if hits + misses > 0 {
                gauge!("strata_cache_hit_ratio", "cache" => cache).set(hits as f64 / (hits + misses) as f64);
            }
        }
        counter!("strata_ingested_bytes_total").absolute(s.appended_bytes);
        let gib = s.appended_bytes as f64 / f64::from(1u32 << 30);
        if gib > 0.0 {
            let per_gib = |n: u64| n as f64 / gib;
            let total: u64 = RequestKind::ALL.iter().map(|k| objects.requests(*k)).sum();
            gauge!("strata_object_store_requests_per_gib_ingested", "op" => "put")
                .set(per_gib(objects.put_requests()));
            gauge!("strata_object_store_requests_per_gib_ingested", "op" => "get")
                .set(per_gib(objects.requests(RequestKind::Get)));
            gauge!("strata_object_store_requests_per_gib_ingested", "op" => "all").set(per_gib(total));
        }
    }
    for kind in RequestKind::ALL {
        counter!("strata_object_store_requests_total", "op" => kind.name()).absolute(objects.requests(kind));
    }
    counter!("strata_object_store_bytes_total", "direction" => "written").absolute(objects.bytes_written());
    counter!("strata_object_store_bytes_total", "direction" => "read").absolute(objects.bytes_read());
    handle.render()
}
