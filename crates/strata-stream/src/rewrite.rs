//! Range rewrite: the batches of one object range replaced by new ones at the
//! same offsets, the range keeping its start and end. This is what log
//! compaction (a `broker` concern: latest value per key) is built on; the
//! stream layer does not look inside the batches.
//!
//! Rules a rewrite keeps (`docs/compaction.md`):
//! - every new batch lies inside the range, in offset order, none overlapping;
//!   a batch may cover offsets whose records are gone (its span is kept), and
//!   whole batches may be dropped, so readers see gaps and skip them;
//! - a range left with no batch is removed from the index, leaving a gap
//!   between ranges that reads skip as well;
//! - the switch is one metadata commit conditional on the stream's ownership
//!   and on the range being unchanged since it was read: a process that lost
//!   the stream, or a range trimmed or merged meanwhile, switches nothing and
//!   the new object is removed again.

use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::index::RangeEntry;
use crate::store::StreamStore;
use crate::stream::ObjRange;
use crate::{BatchInfo, ReadBatch, Stream, StreamError};

/// One object range read whole, to be rewritten.
#[derive(Debug, Clone)]
pub struct RangeContents {
    /// The range's first offset.
    pub start: i64,
    /// The offset after its last.
    pub end: i64,
    /// Its newest record timestamp.
    pub max_ts: i64,
    /// Its batch bytes.
    pub bytes: u64,
    /// Its batches in offset order.
    pub batches: Vec<ReadBatch>,
    range: Arc<ObjRange>,
}

impl StreamStore {
    /// Reads the object range of `stream` starting at `start` whole; `None`
    /// when no range starts there (any more).
    pub async fn read_range(
        &self,
        stream: &Arc<Stream>,
        start: i64,
    ) -> Result<Option<RangeContents>, StreamError> {
        let Some(range) = stream.lock().ranges.get(&start).cloned() else { return Ok(None) };
        let _lease = self.shared.leases.take(&range.object);
        let batches = self.range_batches(stream, &range).await?;
        Ok(Some(RangeContents {
            start: range.entry.start,
            end: range.entry.end,
            max_ts: range.entry.max_ts,
            bytes: range.entry.bytes,
            batches,
            range,
        }))
    }

    /// Every batch of one range of `stream`, within the compaction budget.
    pub(crate) async fn range_batches(
        &self,
        stream: &Stream,
        range: &ObjRange,
    ) -> Result<Vec<ReadBatch>, StreamError> {
        let index = stream.range_index(range).await?;
        let (Some(first), Some(last)) = (index.first(), index.last()) else { return Ok(Vec::new()) };
        let (from, to) = (first.position, last.position + u64::from(last.info.size));
        self.compaction_throttle.take(to - from).await;
        let data = self.shared.objects.get_range(&Path::from(range.entry.object.as_str()), from..to).await?;
        let mut batches = Vec::with_capacity(index.len());
        for b in index.iter() {
            let at = (b.position - from) as usize;
            let end = at + b.info.size as usize;
            if end > data.len() {
                return Err(StreamError::ShortObject(range.entry.object.clone()));
            }
            batches.push(ReadBatch { info: b.info, data: data.slice(at..end) });
        }
        Ok(batches)
    }

    /// Replaces the range `old` (as `read_range` returned it) with `batches`,
    /// keeping its start and end; no batches removes the range. `Ok(false)`
    /// when nothing was switched: the range changed meanwhile, or another
    /// process owns the stream now.
    pub async fn rewrite_range(
        &self,
        stream: &Arc<Stream>,
        old: &RangeContents,
        batches: Vec<(BatchInfo, Bytes)>,
    ) -> Result<bool, StreamError> {
        let mut at = old.start;
        for (info, _) in &batches {
            if info.base_offset < at || info.end_offset() > old.end {
                return Err(StreamError::InvalidRewrite(format!(
                    "batch [{}, {}) outside the range [{}, {}) or out of order",
                    info.base_offset,
                    info.end_offset(),
                    old.start,
                    old.end
                )));
            }
            at = info.end_offset();
        }
        if batches.is_empty() {
            return self.switch_ranges(stream, std::slice::from_ref(&old.range), None).await;
        }
        let id = stream.id();
        let (written, _unprotect) = self.write_object(vec![(id, batches)]).await?;
        let Some((_, mut entry)) = written.into_iter().next() else { return Ok(false) };
        (entry.start, entry.end) = (old.start, old.end);
        self.compaction_throttle.take(entry.object_size).await;
        self.switch_ranges(stream, std::slice::from_ref(&old.range), Some(entry)).await
    }

    /// Switches the index from `group` (adjacent ranges of `stream`) to
    /// `entry` (or to nothing), in one commit conditional on the stream's
    /// ownership, if the ranges are still the ones the caller read. When
    /// nothing was switched the new object is removed (after an error of the
    /// commit itself it stays: the switch may have landed).
    pub(crate) async fn switch_ranges(
        &self,
        stream: &Arc<Stream>,
        group: &[Arc<ObjRange>],
        entry: Option<RangeEntry>,
    ) -> Result<bool, StreamError> {
        let discard = |entry: &Option<RangeEntry>| {
            let object = entry.as_ref().map(|e| e.object.clone());
            async move {
                if let Some(object) = object
                    && let Err(e) = self.shared.objects.delete(&Path::from(object.as_str())).await
                {
                    tracing::warn!(object = %object, error = %e, "cannot remove an unused rewritten object");
                }
            }
        };
        let _guard = self.changes.lock().await;
        let unchanged = {
            let inner = stream.lock();
            !inner.closed
                && group.iter().all(|r| inner.ranges.get(&r.entry.start).is_some_and(|x| Arc::ptr_eq(x, r)))
        };
        let (Some(first), true) = (group.first(), unchanged) else {
            discard(&entry).await;
            return Ok(false);
        };
        let id = stream.id();
        let old: Vec<String> = group.iter().map(|r| r.entry.object.clone()).collect();
        // A new range takes the first one's place (same start) and the others
        // go; without one, all go.
        if let Some(e) = &entry {
            debug_assert_eq!(e.start, first.entry.start);
        }
        let starts: Vec<i64> = group.iter().map(|r| r.entry.start).collect();
        let garbage = self.release_objects(&old);
        let added: Vec<RangeEntry> = entry.iter().cloned().collect();
        let mut edit = self.plan_index_edit(stream, &starts, &added, garbage.len()).await?;
        let mut ops = edit.take_ops();
        ops.extend(garbage);
        // One transaction under the ownership condition (a fold rewrites the
        // meta record: `commit_owned` moves the stream to its revision).
        if !self.commit_owned(vec![(Arc::clone(stream), ops)]).await?.contains_key(&id) {
            // Definitely not switched: another process took the stream over.
            self.discard_index_edit(edit).await;
            discard(&entry).await;
            return Ok(false);
        }
        self.apply_index_edit(stream, edit);
        self.commit_release(&old);
        if let Some(e) = &entry {
            self.shared.refs.add([e.object.as_str()]);
        }
        stream.replace_ranges(&starts, entry);
        Ok(true)
    }
}
