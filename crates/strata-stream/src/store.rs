//! The stream store: every stream of a broker over one shared WAL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::stream::BatchLoc;
use crate::wal::{Wal, WalConfig};
use crate::{BatchInfo, Stream, StreamError, StreamId};

/// Settings of the stream store.
#[derive(Debug, Clone)]
pub struct StreamStoreConfig {
    /// Directory of the WAL segments.
    pub wal_dir: PathBuf,
    /// WAL segment size before rolling.
    pub segment_bytes: u64,
    /// Largest group-commit write.
    pub max_write_bytes: usize,
}

impl StreamStoreConfig {
    /// Defaults for a WAL in `wal_dir`.
    pub fn new(wal_dir: PathBuf) -> Self {
        StreamStoreConfig { wal_dir, segment_bytes: 128 << 20, max_write_bytes: 8 << 20 }
    }
}

/// All streams of one broker, sharing one WAL.
pub struct StreamStore {
    wal: Arc<Wal>,
    streams: Mutex<HashMap<StreamId, Arc<Stream>>>,
    generation: watch::Receiver<u64>,
}

impl StreamStore {
    /// Opens the store: replays the WAL and rebuilds every stream it holds.
    pub fn open(config: StreamStoreConfig) -> Result<Self, StreamError> {
        let (gen_tx, gen_rx) = watch::channel(0u64);
        let (wal, replayed) = Wal::open(
            WalConfig {
                dir: config.wal_dir,
                segment_bytes: config.segment_bytes,
                max_write_bytes: config.max_write_bytes,
            },
            gen_tx,
        )?;
        let mut streams: HashMap<StreamId, Arc<Stream>> = HashMap::new();
        let count = replayed.len();
        for r in replayed {
            let stream = streams
                .entry(r.record.stream_id)
                .or_insert_with(|| Arc::new(Stream::new(r.record.stream_id, Arc::clone(&wal), 0)));
            stream.on_durable(BatchLoc {
                info: BatchInfo {
                    base_offset: r.record.base_offset,
                    meta: r.record.meta,
                    size: r.record.payload.len() as u32,
                },
                segment: r.segment,
                position: r.position,
            });
        }
        tracing::info!(batches = count, streams = streams.len(), "wal replayed");
        Ok(StreamStore { wal, streams: Mutex::new(streams), generation: gen_rx })
    }

    /// Opens a stream, creating it empty when it does not exist yet.
    pub fn open_stream(&self, id: StreamId) -> Arc<Stream> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(streams.entry(id).or_insert_with(|| Arc::new(Stream::new(id, Arc::clone(&self.wal), 0))))
    }

    /// Closes and forgets a stream; later appends to it fail.
    pub fn delete_stream(&self, id: StreamId) {
        let removed = self.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        if let Some(stream) = removed {
            stream.close();
        }
    }

    /// A receiver whose value changes after every group commit: a cheap way for
    /// readers waiting for new data to be woken.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// Whether the WAL has failed (appends are refused).
    pub fn is_failed(&self) -> bool {
        self.wal.is_failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AppendMeta;
    use bytes::Bytes;

    fn meta(n: u32) -> AppendMeta {
        AppendMeta { record_count: n, max_timestamp: i64::from(n) * 10, leader_epoch: 0 }
    }

    #[tokio::test]
    async fn append_read_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = StreamStoreConfig::new(dir.path().join("wal"));
        cfg.segment_bytes = 200; // force rolling
        {
            let store = StreamStore::open(cfg.clone()).expect("open");
            let a = store.open_stream(1);
            let b = store.open_stream(2);
            let mut pending = Vec::new();
            for i in 0..20u32 {
                let s = if i % 2 == 0 { &a } else { &b };
                let app = s
                    .append(meta(i % 3 + 1), |off| Bytes::from(format!("batch-{i}-at-{off}")))
                    .expect("append");
                pending.push(app);
            }
            for p in pending {
                p.durable().await.expect("durable");
            }
            let (start, end) = a.offsets();
            assert_eq!(start, 0);
            let all = a.read(0, usize::MAX).await.expect("read");
            assert_eq!(all.len(), 10);
            assert_eq!(all.last().map(|b| b.info.end_offset()), Some(end));
            // Read from the middle of a batch starts at that batch; max_bytes limits
            // but the first batch always comes whole.
            let multi = all.iter().find(|b| b.info.meta.record_count > 1).expect("a multi-record batch");
            let one = a.read(multi.info.base_offset + 1, 1).await.expect("read");
            assert_eq!(one.len(), 1);
            assert_eq!(one[0].data, multi.data);
            assert!(a.read(end, 100).await.expect("read at end").is_empty());
            assert!(a.read(end + 1, 100).await.is_err());
        }
        // Torn tail: garbage appended to the last segment is cut on replay.
        let mut segs: Vec<_> = std::fs::read_dir(dir.path().join("wal"))
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        segs.sort();
        let last = segs.last().expect("segment").clone();
        let mut data = std::fs::read(&last).expect("read seg");
        data.extend_from_slice(&[0, 0, 1, 0, 9, 9, 9]);
        std::fs::write(&last, data).expect("write");
        let store = StreamStore::open(cfg).expect("reopen");
        let a = store.open_stream(1);
        let batches = a.read(0, usize::MAX).await.expect("read");
        assert_eq!(batches.len(), 10);
        for (i, b) in batches.iter().enumerate() {
            let text = String::from_utf8(b.data.to_vec()).expect("utf8");
            assert_eq!(text, format!("batch-{}-at-{}", i * 2, b.info.base_offset));
        }
        // Appends continue after the replayed end.
        let (_, end) = a.offsets();
        let app = a.append(meta(1), |_| Bytes::from_static(b"x")).expect("append");
        assert_eq!(app.durable().await.expect("durable"), end);
        assert_eq!(a.find_by_timestamp(25).map(|b| b.meta.max_timestamp >= 25), Some(true));
    }
}
