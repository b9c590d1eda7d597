//! Garbage collection of objects.
//!
//! An object is garbage once no index range references it (after trimming,
//! deletion or compaction): it gets a `gc/<object>` record with a deadline, and
//! is deleted once the deadline has passed **and** no read in this process
//! holds a lease on it (see [`Leases`]), so a reader never sees an object vanish
//! under it. Other processes are covered by the grace period.
//!
//! Orphans are objects that no index range and no `gc/` record name: what a
//! crash between an upload's PUT and its index commit leaves behind, or a WAL
//! object below the checkpoint whose delete failed. The orphan sweep lists the
//! bucket and deletes those older than `orphan_age`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use strata_meta::{Condition, Op};

use crate::StreamError;
use crate::index::{self, Checkpoint, GcEntry, RangeEntry, StreamMeta};
use crate::store::{StreamStore, decode, now_ms};

/// Objects that reads of this process are using, with a count per object.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<Arc<str>, usize>>,
}

/// Holds an object against garbage collection until dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    leases: Arc<Leases>,
    object: Arc<str>,
}

impl Leases {
    /// Leases `object` until the returned guard drops.
    pub fn take(self: &Arc<Self>, object: &Arc<str>) -> Lease {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()).entry(Arc::clone(object)).or_default() += 1;
        Lease { leases: Arc::clone(self), object: Arc::clone(object) }
    }

    /// Whether any read holds `object`.
    pub fn is_held(&self, object: &str) -> bool {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).contains_key(object)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = self.leases.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.object) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.object);
            }
        }
    }
}

/// What one orphan sweep found and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanSweep {
    /// Data objects and index manifests referenced by nothing, deleted.
    pub data_objects: usize,
    /// WAL objects below the checkpoint, deleted.
    pub wal_objects: usize,
}

impl StreamStore {
    /// Ops that mark objects garbage when `objects` (one entry per dropped
    /// range) were their last references in this process.
    pub(crate) fn release_objects(&self, objects: &[String]) -> Vec<Op> {
        self.shared.refs.last_references(objects).into_iter().map(|o| self.garbage_op(&o)).collect()
    }

    /// The op that marks `object` garbage after the grace period.
    pub(crate) fn garbage_op(&self, object: &str) -> Op {
        let deadline = now_ms() + self.config.gc_grace.as_millis() as i64;
        Op::Put(format!("{}{object}", index::GC_PREFIX), index::encode(&GcEntry { deadline_ms: deadline }))
    }

    /// Applies, after their commit, the reference drops `release_objects` planned.
    pub(crate) fn commit_release(&self, objects: &[String]) {
        self.shared.refs.release(objects);
    }

    /// Every object a range of the authoritative index names (any owner's),
    /// and every current index manifest.
    ///
    /// One listing is one snapshot: the manifests it names are the current
    /// ones, and their ranges with the inline keys beside them are the whole
    /// index at that revision (manifests are immutable; a replaced one stays
    /// until its own grace period passed, so it is still there to read).
    async fn indexed_objects(&self) -> Result<HashSet<String>, StreamError> {
        let mut known = HashSet::new();
        let mut manifests = Vec::new();
        for e in self.shared.meta.list(index::STREAM_PREFIX).await? {
            if e.key.contains("/r/") {
                let r: RangeEntry = decode(&e.key, &e.value)?;
                known.insert(r.object);
            } else if e.key.ends_with("/m") {
                let m: StreamMeta = decode(&e.key, &e.value)?;
                if let Some(r) = m.index {
                    known.insert(r.object.clone());
                    manifests.push(r);
                }
            }
        }
        for r in manifests {
            known.extend(self.read_manifest(&r).await?.iter().map(|e| e.object.clone()));
        }
        Ok(known)
    }

    /// Deletes objects whose grace period has passed and that no read holds;
    /// their `gc/` records go in one metadata commit. Returns how many.
    pub async fn collect_garbage(&self) -> Result<usize, StreamError> {
        let now = now_ms();
        let mut done: Vec<(String, u64)> = Vec::new();
        let mut confirmed = false;
        let mut indexed: Option<HashSet<String>> = None;
        for e in self.shared.meta.list(index::GC_PREFIX).await? {
            let g: GcEntry = decode(&e.key, &e.value)?;
            if g.deadline_ms > now {
                continue;
            }
            let Some(object) = e.key.strip_prefix(index::GC_PREFIX) else { continue };
            if self.shared.leases.is_held(object) {
                continue; // a read is using it: next round
            }
            if !confirmed {
                // Deletes decide from metadata read as the current owner: the
                // index of every stream, whoever owns it (an object shared
                // with a stream another process took over stays until its
                // owner releases it too and writes its own record).
                indexed = Some(self.indexed_objects().await?);
                self.confirm_owner().await?;
                confirmed = true;
                crate::failpoint::reached("gc");
            }
            let referenced = self.shared.refs.holds(object)
                || indexed.as_ref().is_some_and(|known| known.contains(object));
            if !referenced {
                match self.shared.objects.delete(&Path::from(object)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(err) => {
                        tracing::warn!(object, error = %err, "cannot delete garbage object; will retry");
                        continue;
                    }
                }
            }
            done.push((e.key, e.mod_revision));
        }
        if done.is_empty() {
            return Ok(0);
        }
        // Each record's removal stands alone: parts may commit separately.
        let max = self.shared.meta.max_txn_ops().max(1);
        for part in done.chunks(max) {
            let conditions = part.iter().map(|(k, rev)| Condition::Version(k.clone(), *rev)).collect();
            let ops = part.iter().map(|(k, _)| Op::Delete(k.clone())).collect();
            self.commit(conditions, ops).await?;
        }
        metrics::counter!("strata_gc_deleted_objects_total").increment(done.len() as u64);
        tracing::debug!(objects = done.len(), "garbage collected");
        Ok(done.len())
    }

    /// Finds objects that nothing references and deletes those older than
    /// `orphan_age`: data objects named by no index range and no `gc/` record,
    /// and WAL objects below the checkpoint.
    pub async fn sweep_orphans(&self) -> Result<OrphanSweep, StreamError> {
        // Uploads and compactions of this process hold this lock from their PUT
        // to their index commit: none is half-done while it is held.
        let _guard = self.changes.lock().await;
        let mut known = self.indexed_objects().await?;
        for e in self.shared.meta.list(index::GC_PREFIX).await? {
            if let Some(o) = e.key.strip_prefix(index::GC_PREFIX) {
                known.insert(o.to_string());
            }
        }
        let checkpoint: Checkpoint = match self.shared.meta.get(&self.names.checkpoint_key()).await? {
            Some(e) => decode(&e.key, &e.value)?,
            None => Checkpoint::default(),
        };
        let age = self.config.orphan_age;
        let now = std::time::SystemTime::now();
        let protected = self.protected.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut sweep = OrphanSweep::default();
        let old_enough = |m: &object_store::ObjectMeta| {
            let modified: std::time::SystemTime = m.last_modified.into();
            now.duration_since(modified).unwrap_or_default() >= age
        };
        let mut data: Vec<_> = self.shared.objects.list(Some(&Path::from("data"))).try_collect().await?;
        let manifests: Vec<_> =
            self.shared.objects.list(Some(&Path::from(index::MANIFEST_DIR))).try_collect().await?;
        data.extend(manifests);
        let wal: Vec<_> = if matches!(self.config.wal, crate::WalKind::Object(_)) {
            let listed: Vec<_> = self.shared.objects.list(Some(&self.names.dir())).try_collect().await?;
            listed.into_iter().filter(|m| self.names.holds(&m.location)).collect()
        } else {
            Vec::new()
        };
        // Listed, then confirmed: an object a newer owner wrote came after its
        // claim, hence after this confirmation, hence after the listing.
        self.confirm_owner().await?;
        let orphan = |m: &&object_store::ObjectMeta| {
            let name: &str = m.location.as_ref();
            !known.contains(name) && !protected.contains(name) && old_enough(m)
        };
        for m in data.iter().filter(orphan) {
            match self.shared.objects.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => sweep.data_objects += 1,
                Err(e) => tracing::warn!(object = %m.location, error = %e, "cannot delete orphan"),
            }
        }
        for m in wal.iter().filter(|m| old_enough(m)) {
            let seq = m.location.filename().and_then(crate::wal::object::parse_wal_name);
            if matches!(seq, Some(Ok((s, _))) if s < checkpoint.segment) {
                match self.shared.objects.delete(&m.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => sweep.wal_objects += 1,
                    Err(e) => tracing::warn!(object = %m.location, error = %e, "cannot delete orphan"),
                }
            }
        }
        let removed = sweep.data_objects + sweep.wal_objects;
        if removed > 0 {
            metrics::counter!("strata_orphan_deleted_objects_total").increment(removed as u64);
            tracing::info!(data = sweep.data_objects, wal = sweep.wal_objects, "orphan objects removed");
        }
        Ok(sweep)
    }
}
