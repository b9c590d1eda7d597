//! `strata-index-bench`: how much of etcd a stream index takes as ranges pile
//! up, with and without folding into per-stream index manifests.
//!
//! It drives the stream layer itself (no Kafka front): `--streams` streams on
//! etcd and a local object directory, one small batch appended to every
//! stream per round and one upload per round, so every round adds one range
//! to every stream, as a year of uploads compacted to 64 MiB objects would.
//! Compaction stays off, so the ranges are never merged. Every `--every`
//! rounds it prints the bytes under the prefix (keys plus values), the keys,
//! and the manifest bytes in the object store; at the end, etcd's database
//! size after a compaction and a defragmentation, and the time a new owner
//! takes to load the whole index.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use strata_meta::{EtcdStore, MetaStore};
use strata_stream::{StreamStore, StreamStoreConfig};

/// Index footprint of many streams on etcd.
#[derive(Debug, Parser)]
struct Args {
    /// etcd endpoint, HOST:PORT.
    #[arg(long)]
    etcd: String,
    /// Key prefix in etcd (a fresh one per run).
    #[arg(long)]
    prefix: String,
    /// Directory of the object store and the WAL.
    #[arg(long)]
    dir: PathBuf,
    /// Streams.
    #[arg(long, default_value_t = 10_000)]
    streams: u64,
    /// Rounds (ranges per stream at the end).
    #[arg(long, default_value_t = 100)]
    rounds: u64,
    /// Report every this many rounds.
    #[arg(long, default_value_t = 20)]
    every: u64,
    /// The stream store's `index_inline_ranges` (0: never fold).
    #[arg(long, default_value_t = 32)]
    inline: usize,
}

/// Bytes (keys plus values) and keys under `prefix`.
async fn footprint(client: &mut etcd_client::Client, prefix: &str) -> Result<(u64, u64)> {
    let (mut bytes, mut keys) = (0u64, 0u64);
    let mut from = prefix.as_bytes().to_vec();
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    loop {
        let opts = etcd_client::GetOptions::new().with_range(end.clone()).with_limit(10_000);
        let resp = client.get(from.clone(), Some(opts)).await?;
        for kv in resp.kvs() {
            bytes += (kv.key().len() + kv.value().len()) as u64;
            keys += 1;
        }
        match resp.kvs().last() {
            Some(kv) if resp.more() => {
                from = kv.key().to_vec();
                from.push(0);
            }
            _ => return Ok((bytes, keys)),
        }
    }
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

async fn open(args: &Args, objects: &Arc<dyn object_store::ObjectStore>) -> Result<Arc<StreamStore>> {
    let meta: Arc<dyn MetaStore> = Arc::new(
        EtcdStore::open_owner(std::slice::from_ref(&args.etcd), &args.prefix, Duration::from_secs(30))
            .await
            .context("connect to etcd")?,
    );
    let mut cfg = StreamStoreConfig::new(args.dir.join("wal"));
    cfg.index_inline_ranges = args.inline;
    cfg.compaction.interval = Duration::ZERO;
    cfg.upload_bytes = 1 << 30;
    cfg.max_object_bytes = 1 << 30;
    cfg.split_bytes = 1 << 30;
    Ok(StreamStore::open(cfg, Arc::clone(objects), meta).await?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let objects_dir = args.dir.join("objects");
    std::fs::create_dir_all(&objects_dir)?;
    let objects: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&objects_dir)?);
    let mut client = etcd_client::Client::connect([args.etcd.as_str()], None).await?;
    let prefix = format!("{}/", args.prefix.trim_end_matches('/'));

    let store = open(&args, &objects).await?;
    let ids: Vec<u64> = (1..=args.streams).collect();
    store.acquire(&ids).await?;
    let streams: Vec<_> = ids.iter().map(|id| store.open_stream(*id)).collect();
    let payload = bytes::Bytes::from(vec![b'x'; 100]);
    let started = Instant::now();
    let mut upload_ms = Vec::new();
    for round in 1..=args.rounds {
        let mut durable = Vec::with_capacity(streams.len());
        for s in &streams {
            let appended = s.append(1, 0, |_, _| payload.clone())?;
            durable.push(appended.durable());
        }
        for d in durable {
            d.await?;
        }
        let t = Instant::now();
        store.upload_once().await?;
        upload_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if round % args.every == 0 || round == args.rounds {
            let (bytes, keys) = footprint(&mut client, &prefix).await?;
            let manifests = dir_bytes(&objects_dir.join("index"));
            println!(
                "{}",
                json!({
                    "round": round, "streams": args.streams, "inline": args.inline,
                    "etcd_bytes": bytes, "etcd_keys": keys,
                    "etcd_bytes_per_stream": bytes / args.streams.max(1),
                    "manifest_bytes": manifests,
                    "upload_ms_last": upload_ms.last().copied().unwrap_or(0.0),
                    "elapsed_s": started.elapsed().as_secs_f64(),
                })
            );
        }
    }
    upload_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| upload_ms[((upload_ms.len() as f64 - 1.0) * p).round() as usize];
    drop(streams);
    drop(store);

    // etcd's database after its history is compacted and defragmented.
    let status = client.status().await?;
    let revision = status.header().map(|h| h.revision()).unwrap_or(0);
    client.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical())).await?;
    client.defragment().await?;
    let db = client.status().await?.db_size();

    // A new owner loads the whole index: the keys and every manifest.
    let t = Instant::now();
    let store = open(&args, &objects).await?;
    let load_s = t.elapsed().as_secs_f64();
    let ranges = store.stats().ranges;
    println!(
        "{}",
        json!({
            "summary": true, "streams": args.streams, "rounds": args.rounds, "inline": args.inline,
            "etcd_db_bytes_after_defrag": db, "upload_ms_p50": pct(0.5), "upload_ms_p99": pct(0.99),
            "reopen_s": load_s, "ranges_loaded": ranges,
        })
    );
    Ok(())
}
