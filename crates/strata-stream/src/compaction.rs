//! Object compaction: a stream's runs of small adjacent ranges, each in some
//! (usually multi-stream) object, are rewritten into one per-stream object and
//! the index is switched to it in one metadata commit. The old objects become
//! garbage once no stream references them (see `gc`).
//!
//! Triggers and limits (see [`CompactionConfig`]):
//! - a range is *small* below `target_bytes / 2`;
//! - adjacent small ranges are grouped, up to `target_bytes` per group;
//! - a group of at least two ranges is compacted once it holds
//!   `target_bytes / 2` or more, or at least `min_ranges` ranges (so that a
//!   slow stream's many tiny ranges are merged too, tier by tier);
//! - every byte read and written is paced by a token bucket of `bytes_per_sec`,
//!   and one group is compacted at a time, so compaction cannot starve
//!   produce or fetch of bandwidth.
//!
//! A reader that planned its read on an old range keeps reading the old object:
//! it holds a lease that garbage collection respects.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::index::RangeEntry;
use crate::store::StreamStore;
use crate::stream::ObjRange;
use crate::{BatchInfo, Stream, StreamError};

/// When and how much to compact.
#[derive(Debug, Clone, Copy)]
pub struct CompactionConfig {
    /// How often the compactor looks for work; zero turns it off.
    pub interval: Duration,
    /// Size of a compacted object; ranges below half of it are small.
    pub target_bytes: u64,
    /// A group this long is compacted however few bytes it holds.
    pub min_ranges: usize,
    /// Bytes read plus written per second, at most.
    pub bytes_per_sec: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            interval: Duration::from_secs(30),
            target_bytes: 64 << 20,
            min_ranges: 8,
            bytes_per_sec: 64 << 20,
        }
    }
}

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Compacted objects written (one per group).
    pub objects_written: usize,
    /// Ranges replaced by them.
    pub ranges_merged: usize,
    /// Bytes of the compacted objects.
    pub bytes_written: u64,
}

/// Paces bytes to a rate: each call waits for the budget of the calls before
/// (compaction's bandwidth, and catch-up reads').
#[derive(Debug)]
pub(crate) struct Throttle {
    bytes_per_sec: u64,
    next: std::sync::Mutex<Instant>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Self {
        Throttle { bytes_per_sec, next: std::sync::Mutex::new(Instant::now()) }
    }

    /// Waits until `bytes` more fit in the budget.
    pub async fn take(&self, bytes: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// The groups of `ranges` (a stream's ranges in offset order) to compact, as
/// index ranges into `ranges`.
pub(crate) fn plan(ranges: &[&RangeEntry], config: &CompactionConfig) -> Vec<Range<usize>> {
    let small = |r: &RangeEntry| r.bytes < config.target_bytes / 2;
    let qualifies = |group: &Range<usize>, bytes: u64| {
        group.len() >= 2 && (bytes >= config.target_bytes / 2 || group.len() >= config.min_ranges.max(2))
    };
    let mut out = Vec::new();
    let mut group = 0..0;
    let mut bytes = 0u64;
    for (i, r) in ranges.iter().enumerate() {
        let joins = small(r)
            && !group.is_empty()
            && ranges[group.end - 1].end == r.start
            && bytes + r.bytes <= config.target_bytes;
        if joins {
            group.end = i + 1;
            bytes += r.bytes;
            continue;
        }
        if qualifies(&group, bytes) {
            out.push(group.clone());
        }
        (group, bytes) = if small(r) { (i..i + 1, r.bytes) } else { (i + 1..i + 1, 0) };
    }
    if qualifies(&group, bytes) {
        out.push(group);
    }
    out
}

impl StreamStore {
    /// One compaction pass over every stream.
    pub async fn compact_once(&self) -> Result<CompactionOutcome, StreamError> {
        let mut streams: Vec<Arc<Stream>> = self.lock_streams().values().cloned().collect();
        streams.sort_by_key(|s| s.id());
        let mut outcome = CompactionOutcome::default();
        for stream in streams {
            let ranges: Vec<Arc<ObjRange>> = stream.lock().ranges.values().cloned().collect();
            let entries: Vec<&RangeEntry> = ranges.iter().map(|r| &r.entry).collect();
            // A switch writes one range, deletes the others and records up to
            // one gc entry per input: it must fit in one transaction.
            let most = (self.shared.meta.max_txn_ops() / 2).max(2);
            for group in plan(&entries, &self.config.compaction) {
                let group = &ranges[group.start..group.end.min(group.start + most)];
                if let Some(bytes) = self.compact_group(&stream, group).await? {
                    outcome.objects_written += 1;
                    outcome.ranges_merged += group.len();
                    outcome.bytes_written += bytes;
                    metrics::counter!("strata_compaction_objects_total").increment(1);
                    metrics::counter!("strata_compaction_ranges_total").increment(group.len() as u64);
                    metrics::counter!("strata_compaction_bytes_total").increment(bytes);
                }
            }
        }
        if outcome.objects_written > 0 {
            tracing::debug!(?outcome, "compacted");
        }
        Ok(outcome)
    }

    /// Rewrites `group` (adjacent ranges of `stream`) into one object and
    /// switches the index to it. `None` when the ranges changed meanwhile
    /// (trimmed, deleted): the new object is then removed again.
    async fn compact_group(
        &self,
        stream: &Arc<Stream>,
        group: &[Arc<ObjRange>],
    ) -> Result<Option<u64>, StreamError> {
        let _leases: Vec<_> = group.iter().map(|r| self.shared.leases.take(&r.object)).collect();
        let mut batches: Vec<(BatchInfo, Bytes)> = Vec::new();
        for r in group {
            batches.extend(self.range_batches(stream, r).await?.into_iter().map(|b| (b.info, b.data)));
        }
        let (Some(first), Some(last)) = (group.first(), group.last()) else { return Ok(None) };
        let id = stream.id();
        let (written, _unprotect) = self.write_object(vec![(id, batches)]).await?;
        let Some((_, mut entry)) = written.into_iter().next() else { return Ok(None) };
        // The merged range spans its inputs exactly, gaps a log compaction
        // left at either edge included.
        (entry.start, entry.end) = (first.entry.start, last.entry.end);
        crate::failpoint::reached("compaction");
        let bytes = entry.object_size;
        self.compaction_throttle.take(bytes).await;
        Ok(self.switch_ranges(stream, group, Some(entry)).await?.then_some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i64, end: i64, bytes: u64) -> RangeEntry {
        RangeEntry {
            object: format!("o{start}"),
            start,
            end,
            max_ts: 0,
            bytes,
            object_size: bytes,
            index_pos: 0,
            index_len: 0,
        }
    }

    fn groups(ranges: &[RangeEntry], target: u64, min_ranges: usize) -> Vec<Range<usize>> {
        let config = CompactionConfig { target_bytes: target, min_ranges, ..CompactionConfig::default() };
        plan(&ranges.iter().collect::<Vec<_>>(), &config)
    }

    #[test]
    fn groups_small_adjacent_ranges_up_to_the_target() {
        // Ten ranges of 30 bytes, target 100: groups of three (90 bytes).
        let rs: Vec<_> = (0..10).map(|i| range(i * 10, i * 10 + 10, 30)).collect();
        assert_eq!(groups(&rs, 100, 8), vec![0..3, 3..6, 6..9]);
        // The tenth alone is left for later.
    }

    #[test]
    fn many_tiny_ranges_merge_once_there_are_min_ranges() {
        let rs: Vec<_> = (0..5).map(|i| range(i, i + 1, 1)).collect();
        assert_eq!(groups(&rs, 100, 8), Vec::<Range<usize>>::new());
        assert_eq!(groups(&rs, 100, 4), vec![0..5]);
    }

    #[test]
    fn large_ranges_and_gaps_split_groups() {
        let rs = vec![
            range(0, 1, 10),
            range(1, 2, 10),
            range(2, 3, 80), // large: not small
            range(3, 4, 10),
            range(4, 5, 10),
            range(9, 10, 10), // not adjacent to the one before
            range(10, 11, 10),
        ];
        assert_eq!(groups(&rs, 100, 2), vec![0..2, 3..5, 5..7]);
        assert_eq!(groups(&rs, 100, 3), Vec::<Range<usize>>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_paces_bytes() {
        let t = Throttle::new(1000);
        let started = Instant::now();
        t.take(500).await; // first call: no wait
        t.take(500).await; // waits for the first's 0.5 s
        t.take(1).await; // and the second's
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
