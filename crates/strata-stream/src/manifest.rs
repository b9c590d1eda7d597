//! Per-stream index manifests: what keeps the metadata store small at
//! thousands of streams with long retention (docs/ownership.md, "Where the
//! object index lives").
//!
//! A stream's index is two disjoint sets of ranges:
//! - **inline** ranges, one metadata key each (`s/<id>/r/<start>`): where
//!   uploads add their ranges, cheap to add and remove;
//! - **folded** ranges, in one immutable object of the object store
//!   ([`IndexManifest`]) that the stream's meta record names
//!   ([`StreamMeta::index`]).
//!
//! Every index edit (an upload's new range, a compaction's switch, a trim, a
//! rewrite) is planned here ([`StreamStore::plan_index_edit`]). It stays
//! inline while the stream keeps at most `index_inline_ranges` inline ranges
//! and removes none of the folded ones; otherwise it *folds*: a new manifest
//! with every range after the edit (but those inline ranges that do not fit
//! in one transaction) is written first, then one transaction, conditional
//! on the stream's ownership like every index commit, points the meta record
//! at it, deletes the folded inline keys and marks the old manifest garbage.
//! A fold is atomic, so a reader never sees a range twice or a replaced range
//! beside its replacement. A fold whose commit does not land leaves an
//! object nothing names: removed at once on a known conflict, else by the
//! orphan sweep.
//!
//! Readers outside the owner (a new owner after its claim, the GC) read the
//! meta record, the manifest and the inline keys, then the meta record
//! again: an unchanged revision means no fold came between
//! ([`StreamStore::read_index`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use strata_meta::{Op, Revision};

use crate::index::{self, IndexManifest, IndexRef, RangeEntry, StreamMeta};
use crate::store::{StreamStore, decode};
use crate::{Stream, StreamError, StreamId};

/// Reads a manifest's ranges from the object store.
pub(crate) async fn load_manifest(
    objects: &dyn object_store::ObjectStore,
    r: &IndexRef,
) -> Result<Vec<RangeEntry>, StreamError> {
    let body = objects.get(&Path::from(r.object.as_str())).await?.bytes().await?;
    Ok(decode::<IndexManifest>(&r.object, &body)?.ranges)
}

/// How often a reader retries when folds keep changing the index under it.
const READ_ATTEMPTS: usize = 8;

/// One planned index edit of a stream: commit `ops` (conditional on the
/// stream's ownership, in one transaction), then [`StreamStore::apply_index_edit`]
/// on success or [`StreamStore::discard_index_edit`] on a known conflict.
#[derive(Debug)]
pub(crate) struct IndexEdit {
    /// The metadata ops, to commit together.
    ops: Vec<Op>,
    /// The stream's inline range starts once they landed.
    inline: BTreeSet<i64>,
    /// The stream's manifest once they landed.
    index: Option<IndexRef>,
    /// The manifest this edit wrote (a fold), if any.
    written: Option<String>,
}

impl IndexEdit {
    /// Whether the edit rewrites the stream's meta record (a fold).
    pub fn folds(&self) -> bool {
        self.written.is_some()
    }

    /// Takes the ops out, to commit them (the edit keeps what to apply).
    pub fn take_ops(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.ops)
    }
}

/// A stream's index as the metadata store and its manifest hold it.
#[derive(Debug, Default)]
pub(crate) struct StoredIndex {
    /// The meta record (default when absent).
    pub meta: StreamMeta,
    /// Its revision (`None`: absent).
    pub rev: Option<Revision>,
    /// Every range, in offset order, with whether it is inline.
    pub ranges: Vec<(RangeEntry, bool)>,
}

impl StoredIndex {
    /// The end of the indexed data (at least the start offset).
    pub fn end(&self) -> i64 {
        self.ranges.iter().map(|(r, _)| r.end).max().unwrap_or(self.meta.start).max(self.meta.start)
    }
}

impl StreamStore {
    /// Inline ranges a stream keeps before it folds (0: never), bounded so a
    /// fold's transaction fits the store's limit.
    fn inline_limit(&self) -> usize {
        let max = self.shared.meta.max_txn_ops().max(8);
        self.config.index_inline_ranges.min(max / 2)
    }

    /// Where one stream folds: between half the limit and the limit, spread
    /// by its id, so that streams uploaded together (every busy stream gets
    /// a range in every upload) do not all fold in the same upload.
    fn fold_at(&self, id: StreamId) -> usize {
        let limit = self.inline_limit();
        if limit < 4 {
            return limit;
        }
        let spread = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % (limit / 2 + 1);
        limit / 2 + spread
    }

    /// Plans the index ops that remove the ranges of `stream` starting at
    /// `removed` and add `added`, leaving room for `extra` more ops of the
    /// caller in the same transaction. A fold writes its manifest here. The
    /// caller holds the store's `changes` lock until it applied or discarded
    /// the edit.
    pub(crate) async fn plan_index_edit(
        &self,
        stream: &Arc<Stream>,
        removed: &[i64],
        added: &[RangeEntry],
        extra: usize,
    ) -> Result<IndexEdit, StreamError> {
        let id = stream.id();
        let limit = self.fold_at(id);
        let removed: BTreeSet<i64> = removed.iter().copied().collect();
        let (inline_now, index_now, removes_folded) = {
            let inner = stream.lock();
            let folded = removed.iter().any(|s| inner.ranges.contains_key(s) && !inner.inline.contains(s));
            (inner.inline.clone(), inner.index.clone(), folded)
        };
        let added_starts: BTreeSet<i64> = added.iter().map(|r| r.start).collect();
        let mut inline_after: BTreeSet<i64> = inline_now.difference(&removed).copied().collect();
        inline_after.extend(added_starts.iter().copied());
        if !removes_folded && (limit == 0 || inline_after.len() <= limit) {
            let mut ops: Vec<Op> = removed
                .iter()
                .filter(|s| inline_now.contains(s) && !added_starts.contains(s))
                .map(|s| Op::Delete(index::range_key(id, *s)))
                .collect();
            ops.extend(added.iter().map(|r| Op::Put(index::range_key(id, r.start), index::encode(r))));
            return Ok(IndexEdit { ops, inline: inline_after, index: index_now, written: None });
        }
        // A fold. Its transaction: the meta record, the old manifest's gc
        // record, the deletes of removed inline keys, then as many folded
        // inline keys as fit; inline ranges past that stay inline.
        let max = self.shared.meta.max_txn_ops().max(8);
        let removed_inline: Vec<i64> = removed.iter().filter(|s| inline_now.contains(s)).copied().collect();
        let budget = max.saturating_sub(2 + removed_inline.len() + extra);
        let untouched: Vec<i64> = inline_now
            .iter()
            .filter(|s| !removed.contains(s) && !added_starts.contains(s))
            .copied()
            .collect();
        let (folded_inline, kept_inline) = untouched.split_at(untouched.len().min(budget));
        let kept: BTreeSet<i64> = kept_inline.iter().copied().collect();
        let (mut after, meta): (BTreeMap<i64, RangeEntry>, StreamMeta) = {
            let inner = stream.lock();
            (inner.ranges.iter().map(|(s, r)| (*s, r.entry.clone())).collect(), inner.meta())
        };
        for s in &removed {
            after.remove(s);
        }
        for r in added {
            after.insert(r.start, r.clone());
        }
        let folded: Vec<RangeEntry> = after.into_values().filter(|r| !kept.contains(&r.start)).collect();
        let name = index::manifest_object(id);
        let new_ref = IndexRef {
            object: name.clone(),
            ranges: folded.len() as u32,
            end: folded.iter().map(|r| r.end).max().unwrap_or(meta.start),
        };
        let body = index::encode(&IndexManifest { stream: id, ranges: folded.clone() });
        self.shared.objects.put(&Path::from(name.as_str()), PutPayload::from_bytes(body)).await?;
        self.manifests.insert(name.clone(), Arc::new(folded));
        let mut new_meta = meta;
        new_meta.index = Some(new_ref.clone());
        let mut ops = vec![Op::Put(index::meta_key(id), index::encode(&new_meta))];
        if let Some(old) = &index_now {
            ops.push(self.garbage_op(&old.object));
        }
        ops.extend(removed_inline.iter().chain(folded_inline).map(|s| Op::Delete(index::range_key(id, *s))));
        metrics::counter!("strata_index_folds_total").increment(1);
        tracing::debug!(stream = id, ranges = new_ref.ranges, kept = kept.len(), "index folded");
        Ok(IndexEdit { ops, inline: kept, index: Some(new_ref), written: Some(name) })
    }

    /// Records a landed edit in the stream (its ranges themselves are the
    /// caller's to update).
    pub(crate) fn apply_index_edit(&self, stream: &Stream, edit: IndexEdit) {
        let mut inner = stream.lock();
        inner.inline = edit.inline;
        inner.index = edit.index;
    }

    /// Removes what a definitely refused edit wrote.
    pub(crate) async fn discard_index_edit(&self, edit: IndexEdit) {
        if let Some(name) = edit.written {
            self.manifests.remove(&name);
            if let Err(e) = self.shared.objects.delete(&Path::from(name.as_str())).await {
                tracing::warn!(object = %name, error = %e, "cannot remove an unused index manifest");
            }
        }
    }

    /// The ranges of a manifest (immutable, so cached by name).
    pub(crate) async fn read_manifest(&self, r: &IndexRef) -> Result<Arc<Vec<RangeEntry>>, StreamError> {
        if let Some(hit) = self.manifests.get(&r.object) {
            return Ok(hit);
        }
        let ranges = Arc::new(load_manifest(self.shared.objects.as_ref(), r).await?);
        self.manifests.insert(r.object.clone(), Arc::clone(&ranges));
        Ok(ranges)
    }

    /// A stream's whole index, read consistently: the meta record, its
    /// manifest and the inline keys, retried while a fold changes the record
    /// in between.
    pub(crate) async fn read_index(&self, id: StreamId) -> Result<StoredIndex, StreamError> {
        let key = index::meta_key(id);
        let mut last_err = None;
        for _ in 0..READ_ATTEMPTS {
            let (meta, rev) = match self.shared.meta.get(&key).await? {
                Some(e) => (decode::<StreamMeta>(&e.key, &e.value)?, Some(e.mod_revision)),
                None => (StreamMeta::default(), None),
            };
            let folded = match &meta.index {
                Some(r) => match self.read_manifest(r).await {
                    Ok(f) => Some(f),
                    // Replaced and collected since the record was read.
                    Err(e @ StreamError::ObjectStore(object_store::Error::NotFound { .. })) => {
                        last_err = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                None => None,
            };
            let mut inline = Vec::new();
            for e in self.shared.meta.list(&index::range_prefix(id)).await? {
                inline.push(decode::<RangeEntry>(&e.key, &e.value)?);
            }
            let again = self.shared.meta.get(&key).await?.map(|e| e.mod_revision);
            if again != rev {
                continue;
            }
            let mut ranges: BTreeMap<i64, (RangeEntry, bool)> = BTreeMap::new();
            for r in folded.iter().flat_map(|f| f.iter()) {
                ranges.insert(r.start, (r.clone(), false));
            }
            for r in inline {
                ranges.insert(r.start, (r, true));
            }
            return Ok(StoredIndex { meta, rev, ranges: ranges.into_values().collect() });
        }
        Err(last_err.unwrap_or_else(|| {
            StreamError::Unavailable(format!("the index of stream {id} kept changing while read"))
        }))
    }
}
