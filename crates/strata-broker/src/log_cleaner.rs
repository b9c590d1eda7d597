//! Log compaction (Kafka's log cleaner): for topics with
//! `cleanup.policy=compact` (and `compact,delete`), and for
//! `__consumer_offsets`, only the latest record of each key is kept, through
//! the stream layer's range rewrite: surviving records keep their offsets,
//! produce and fetch go on meanwhile. The design and its rules are in
//! `docs/compaction.md`.
//!
//! Strata's unit is an uploaded object range. The *active segment* is what
//! `segment.ms` / `segment.bytes` have not rolled yet (always at least the
//! newest range and the WAL tail); it is never compacted. A pass over a
//! partition maps each key of the dirty section (from where the last pass
//! stopped to the cleanable end) to its latest offset, then rewrites every
//! range before the cleanable end without the records a later one replaced,
//! and without tombstones older than `delete.retention.ms`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use strata_stream::{BatchInfo, ReadBatch, Stream, StreamId};

use crate::broker::now_ms;
use crate::{Broker, BrokerError, records};

/// The topic configs log compaction honours, with Kafka's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanerConfig {
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: younger records are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record this old forces a pass.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone outlives compaction.
    pub delete_retention_ms: i64,
    /// `segment.ms`: the active segment rolls after this long.
    pub segment_ms: i64,
    /// `segment.bytes`: the active segment rolls at this size.
    pub segment_bytes: i64,
}

impl CleanerConfig {
    /// The effective settings for a topic's explicit `configs`; `None` when
    /// the topic is not compacted.
    pub fn for_topic(configs: &BTreeMap<String, String>) -> Option<Self> {
        if !crate::topic_config::has_cleanup_policy(configs, "compact") {
            return None;
        }
        let long =
            |name: &str, default: i64| configs.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        Some(CleanerConfig {
            min_cleanable_dirty_ratio: configs
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.5),
            min_compaction_lag_ms: long("min.compaction.lag.ms", 0),
            max_compaction_lag_ms: long("max.compaction.lag.ms", i64::MAX),
            delete_retention_ms: long("delete.retention.ms", 86_400_000),
            segment_ms: long("segment.ms", 604_800_000),
            segment_bytes: long("segment.bytes", 1_073_741_824),
        })
    }
}

/// One object range as planning sees it: `(start, end, max timestamp, bytes)`.
pub(crate) type RangeFacts = (i64, i64, i64, u64);

/// What one pass over a partition is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Offsets at or after this are not compacted (the active segment, or
    /// records younger than `min.compaction.lag.ms`).
    pub cleanable_end: i64,
    /// Where the dirty section starts.
    pub first_dirty: i64,
    /// Starts of the ranges to rewrite, oldest first.
    pub ranges: Vec<i64>,
}

/// Where the active segment starts: segments roll, oldest first, when the
/// next range would take one past `segment.bytes` or its records are
/// `segment.ms` newer than the segment's first range's.
pub(crate) fn active_segment_start(ranges: &[RangeFacts], cfg: &CleanerConfig) -> Option<i64> {
    let (first, rest) = ranges.split_first()?;
    let (mut seg_start, mut seg_ts, mut seg_bytes) = (first.0, first.2, first.3);
    for &(start, _, max_ts, bytes) in rest {
        let by_size = seg_bytes.saturating_add(bytes) > cfg.segment_bytes.max(0) as u64;
        let by_time = max_ts.saturating_sub(seg_ts) >= cfg.segment_ms;
        if by_size || by_time {
            (seg_start, seg_ts, seg_bytes) = (start, max_ts, 0);
        }
        seg_bytes = seg_bytes.saturating_add(bytes);
    }
    Some(seg_start)
}

/// Decides whether a pass is due over `ranges` (a partition's object ranges,
/// oldest first) whose dirty section starts at `first_dirty`, and what it
/// rewrites: Kafka's dirty-ratio and compaction-lag rules over ranges.
pub(crate) fn plan(ranges: &[RangeFacts], first_dirty: i64, cfg: &CleanerConfig, now: i64) -> Option<Plan> {
    let active = active_segment_start(ranges, cfg)?;
    let lag_end = ranges
        .iter()
        .find(|r| r.2 > now.saturating_sub(cfg.min_compaction_lag_ms))
        .map(|r| r.0)
        .unwrap_or(i64::MAX);
    let cleanable_end = active.min(lag_end);
    let cleanable: Vec<&RangeFacts> = ranges.iter().filter(|r| r.1 <= cleanable_end).collect();
    let total: u64 = cleanable.iter().map(|r| r.3).sum();
    let dirty: Vec<&&RangeFacts> = cleanable.iter().filter(|r| r.0 >= first_dirty).collect();
    let dirty_bytes: u64 = dirty.iter().map(|r| r.3).sum();
    if total == 0 || dirty.is_empty() {
        return None;
    }
    let ratio = dirty_bytes as f64 / total as f64;
    let overdue = dirty.iter().any(|r| r.2 < now.saturating_sub(cfg.max_compaction_lag_ms));
    if ratio < cfg.min_cleanable_dirty_ratio && !overdue {
        return None;
    }
    Some(Plan {
        cleanable_end,
        first_dirty: dirty.first().map(|r| r.0).unwrap_or(first_dirty),
        ranges: cleanable.iter().map(|r| r.0).collect(),
    })
}

/// Whether a batch at `base` is data of an aborted transaction (between the
/// transaction's first offset and its abort marker).
fn of_an_aborted_transaction(
    h: &records::BatchHeader,
    base: i64,
    aborted: &[crate::producer_state::AbortedTxn],
) -> bool {
    h.is_transactional()
        && !h.is_control()
        && aborted
            .iter()
            .any(|a| a.producer_id == h.producer_id && a.first_offset <= base && base < a.last_offset)
}

/// The latest offset of each key among `batches`. Records of aborted
/// transactions replace nothing (`aborted`: the partition's aborted list).
pub(crate) fn map_keys(
    batches: &[ReadBatch],
    map: &mut HashMap<Bytes, i64>,
    aborted: &[crate::producer_state::AbortedTxn],
) -> Result<(), BrokerError> {
    for b in batches {
        let Some(h) = records::parse_header(&b.data) else { continue };
        if h.is_control() || of_an_aborted_transaction(&h, b.info.base_offset, aborted) {
            continue;
        }
        let mut data = b.data.clone();
        let set =
            RecordBatchDecoder::decode(&mut data).map_err(|e| BrokerError::CorruptMessage(e.to_string()))?;
        for r in set.records {
            if let Some(k) = r.key {
                let e = map.entry(k).or_insert(r.offset);
                *e = (*e).max(r.offset);
            }
        }
    }
    Ok(())
}

/// One batch without the records a later one replaced and the expired
/// tombstones: `None` when nothing changes, `Some(None)` when nothing is left.
/// Data of an aborted transaction goes whole, as Kafka's cleaner discards it
/// (its abort marker stays, so its aborted-list entry stays true). A
/// rewritten batch keeps its offset span in the stream (so producer state
/// and offsets stay as they were), its attributes, and its timestamp type.
pub(crate) fn filter_batch(
    b: &ReadBatch,
    map: &HashMap<Bytes, i64>,
    tombstone_horizon: i64,
    aborted: &[crate::producer_state::AbortedTxn],
) -> Result<Option<Option<(BatchInfo, Bytes)>>, BrokerError> {
    let Some(header) = records::parse_header(&b.data) else { return Ok(None) };
    if header.is_control() {
        return Ok(None);
    }
    if of_an_aborted_transaction(&header, b.info.base_offset, aborted) {
        return Ok(Some(None));
    }
    let mut data = b.data.clone();
    let set =
        RecordBatchDecoder::decode(&mut data).map_err(|e| BrokerError::CorruptMessage(e.to_string()))?;
    let before = set.records.len();
    let mut keep: Vec<_> = set
        .records
        .into_iter()
        .filter(|r| {
            let Some(k) = &r.key else { return true };
            let latest = map.get(k).is_none_or(|o| *o <= r.offset);
            let expired_tombstone = r.value.is_none() && header.max_timestamp < tombstone_horizon;
            latest && !expired_tombstone
        })
        .collect();
    if keep.len() == before {
        return Ok(None);
    }
    let Some(first_offset) = keep.first().map(|r| r.offset) else { return Ok(Some(None)) };
    // Sequences follow offsets from the batch's base sequence.
    if let Some(r) = keep.first_mut()
        && header.producer_id >= 0
    {
        r.sequence = header.base_sequence.wrapping_add((first_offset - header.base_offset) as i32);
    }
    let out = records::encode_one_batch(&mut keep, set.compression)?;
    let append_time = records::is_log_append_time(&b.data).then_some(header.max_timestamp);
    let bytes = records::stamp(&out, first_offset, b.info.meta.leader_epoch, append_time);
    let info = BatchInfo { size: bytes.len() as u32, ..b.info };
    Ok(Some(Some((info, bytes))))
}

/// What the cleaner remembers between passes: where each stream's dirty
/// section starts (lost on restart, when everything counts as dirty once).
#[derive(Debug, Default)]
pub struct CleanerState {
    first_dirty: std::sync::Mutex<HashMap<StreamId, i64>>,
}

impl Broker {
    /// One pass of log compaction over every compacted partition.
    pub async fn clean_logs(&self) {
        for topic in self.catalog.topics() {
            let Some(cfg) = CleanerConfig::for_topic(&topic.configs) else { continue };
            for (i, _) in topic.partition_streams.iter().enumerate() {
                let Some(stream) = self.partition(&topic, i as i32) else { continue };
                match self.clean_partition(&stream, &cfg).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(topic = %topic.name, partition = i, ranges = n, "log compacted"),
                    Err(e) => {
                        tracing::warn!(topic = %topic.name, partition = i, error = %e, "log compaction failed")
                    }
                }
            }
        }
    }

    /// Compacts one partition if its plan says so; returns the ranges rewritten.
    async fn clean_partition(&self, stream: &Arc<Stream>, cfg: &CleanerConfig) -> Result<usize, BrokerError> {
        let id = stream.id();
        let start = stream.offsets().0;
        let first_dirty =
            self.cleaner.first_dirty.lock().unwrap_or_else(|e| e.into_inner()).get(&id).copied();
        let now = now_ms();
        // Nothing at or after the last stable offset is cleaned: an open
        // transaction may still abort (docs/transactions.md).
        let (lso, aborted) = {
            let state = self.producers.partition(stream).await?;
            let mut producers = state.lock();
            (producers.last_stable_offset(stream.offsets().1), producers.aborted.clone())
        };
        let ranges: Vec<RangeFacts> = stream.ranges().into_iter().filter(|r| r.1 <= lso).collect();
        let Some(plan) = plan(&ranges, first_dirty.unwrap_or(start), cfg, now) else { return Ok(0) };
        // The key map covers the dirty section; then one range at a time is
        // read and rewritten, so a pass holds one range in memory (as Kafka's
        // cleaner, it reads the dirty section twice).
        let mut map: HashMap<Bytes, i64> = HashMap::new();
        for &at in plan.ranges.iter().filter(|at| **at >= plan.first_dirty) {
            if let Some(c) = self.streams.read_range(stream, at).await? {
                map_keys(&c.batches, &mut map, &aborted)?;
            }
        }
        let horizon = now.saturating_sub(cfg.delete_retention_ms);
        let mut rewritten = 0;
        // A range that changed under the pass (object compaction merged it,
        // say) keeps its replaced records: the dirty section is then not
        // marked clean, so the next pass maps it again.
        let mut complete = true;
        for &at in &plan.ranges {
            let Some(c) = self.streams.read_range(stream, at).await? else {
                complete = false;
                continue;
            };
            let mut changed = false;
            let mut out = Vec::with_capacity(c.batches.len());
            for b in &c.batches {
                match filter_batch(b, &map, horizon, &aborted)? {
                    None => out.push((b.info, b.data.clone())),
                    Some(Some(kept)) => {
                        changed = true;
                        out.push(kept);
                    }
                    Some(None) => changed = true,
                }
            }
            if changed {
                if self.streams.rewrite_range(stream, &c, out).await? {
                    rewritten += 1;
                    metrics::counter!("strata_log_compaction_ranges_total").increment(1);
                } else {
                    complete = false;
                }
            }
        }
        if complete {
            self.cleaner.first_dirty.lock().unwrap_or_else(|e| e.into_inner()).insert(id, plan.cleanable_end);
        }
        metrics::counter!("strata_log_compaction_passes_total").increment(1);
        Ok(rewritten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CleanerConfig {
        CleanerConfig::for_topic(&BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]))
            .expect("compacted")
    }

    use bytes::BytesMut;
    use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions};

    #[test]
    fn only_compacted_topics_are_cleaned() {
        let with = |p: &str| CleanerConfig::for_topic(&BTreeMap::from([("cleanup.policy".into(), p.into())]));
        assert!(with("delete").is_none());
        assert!(with("compact,delete").is_some());
        assert!(CleanerConfig::for_topic(&BTreeMap::new()).is_none());
        assert_eq!(cfg().min_cleanable_dirty_ratio, 0.5);
        assert_eq!(cfg().delete_retention_ms, 86_400_000);
    }

    #[test]
    fn the_active_segment_rolls_by_time_and_size() {
        let ranges = [(0, 10, 1000, 100), (10, 20, 1500, 100), (20, 30, 2100, 100), (30, 40, 2200, 100)];
        let c = CleanerConfig { segment_ms: 1000, ..cfg() };
        // 2100 - 1000 >= 1000: a roll at 20.
        assert_eq!(active_segment_start(&ranges, &c), Some(20));
        let c = CleanerConfig { segment_bytes: 250, ..cfg() };
        assert_eq!(active_segment_start(&ranges, &c), Some(20));
        // Defaults: one segment, all active.
        assert_eq!(active_segment_start(&ranges, &cfg()), Some(0));
        assert_eq!(plan(&ranges, 0, &cfg(), 10_000), None);
    }

    #[test]
    fn a_pass_is_due_by_dirty_ratio_or_max_lag_and_spares_young_records() {
        let ranges = [(0, 10, 1000, 100), (10, 20, 2000, 100), (20, 30, 3000, 100), (30, 40, 4000, 100)];
        let c = CleanerConfig { segment_ms: 1, ..cfg() };
        // Everything but the newest range is cleanable and dirty.
        let p = plan(&ranges, 0, &c, 10_000).expect("due");
        assert_eq!((p.cleanable_end, p.ranges.clone()), (30, vec![0, 10, 20]));
        // One dirty range in three: below the 0.5 ratio.
        assert_eq!(plan(&ranges, 20, &c, 10_000), None);
        let low = CleanerConfig { min_cleanable_dirty_ratio: 0.3, ..c };
        assert!(plan(&ranges, 20, &low, 10_000).is_some());
        // ...unless a dirty record is older than max.compaction.lag.ms.
        let lagging = CleanerConfig { max_compaction_lag_ms: 5000, ..c };
        assert!(plan(&ranges, 20, &lagging, 10_000).is_some());
        // min.compaction.lag.ms keeps the last two ranges out.
        let young = CleanerConfig { min_compaction_lag_ms: 7500, ..c };
        assert_eq!(plan(&ranges, 0, &young, 10_000).map(|p| p.cleanable_end), Some(20));
        // Nothing dirty: nothing to do.
        assert_eq!(plan(&ranges, 30, &c, 10_000), None);
    }

    fn batch(base: i64, records: &[(Option<&str>, Option<&str>)]) -> ReadBatch {
        batch_of(7, base, records)
    }

    fn batch_of(producer_id: i64, base: i64, records: &[(Option<&str>, Option<&str>)]) -> ReadBatch {
        batch_with(producer_id, false, base, records)
    }

    fn batch_with(
        producer_id: i64,
        transactional: bool,
        base: i64,
        records: &[(Option<&str>, Option<&str>)],
    ) -> ReadBatch {
        use kafka_protocol::records::{Compression, Record, TimestampType};
        let recs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: if producer_id >= 0 { 100 + i as i32 } else { -1 + i as i32 },
                timestamp: 1000,
                key: k.map(|s| Bytes::from(s.to_string())),
                value: v.map(|s| Bytes::from(s.to_string())),
                headers: Default::default(),
            })
            .collect();
        let mut out = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut out,
            recs.iter(),
            &RecordEncodeOptions { version: 2, compression: Compression::Zstd },
        )
        .expect("encode");
        let data = out.freeze();
        let meta = strata_stream::AppendMeta {
            record_count: records.len() as u32,
            max_timestamp: 1000,
            leader_epoch: 0,
        };
        ReadBatch { info: BatchInfo { base_offset: base, meta, size: data.len() as u32 }, data }
    }

    #[test]
    fn a_batch_without_a_producer_stays_one_batch() {
        // As the group coordinator writes them: no producer id, sequence -1.
        let b = batch_of(
            -1,
            40,
            &[(Some("a"), Some("1")), (Some("b"), Some("1")), (Some("c"), Some("1")), (Some("d"), Some("1"))],
        );
        let later = batch_of(-1, 50, &[(Some("b"), Some("2"))]);
        let mut map = HashMap::new();
        map_keys(&[b.clone(), later], &mut map, &[]).expect("map");
        let (info, data) =
            filter_batch(&b, &map, 0, &[]).expect("filter").expect("changed").expect("not empty");
        assert_eq!((info.base_offset, info.end_offset()), (40, 44));
        let h = records::parse_header(&data).expect("header");
        assert_eq!((h.base_offset, h.record_count, h.base_sequence, h.producer_id), (40, 3, -1, -1));
        let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]) as usize;
        assert_eq!(len + 12, data.len(), "exactly one batch");
        let mut d = data.clone();
        let offsets: Vec<i64> =
            RecordBatchDecoder::decode(&mut d).expect("decode").records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![40, 42, 43]);
    }

    #[test]
    fn a_batch_keeps_the_latest_of_each_key_at_its_offset() {
        let b = batch(
            10,
            &[(Some("a"), Some("1")), (Some("b"), Some("1")), (Some("a"), Some("2")), (Some("c"), None)],
        );
        let mut map = HashMap::new();
        map_keys(std::slice::from_ref(&b), &mut map, &[]).expect("map");
        assert_eq!(map.get(&Bytes::from("a")), Some(&12));
        let later = batch(20, &[(Some("b"), Some("2"))]);
        map_keys(std::slice::from_ref(&later), &mut map, &[]).expect("map");
        // The tombstone of c is young: kept.
        let (info, data) =
            filter_batch(&b, &map, 0, &[]).expect("filter").expect("changed").expect("not empty");
        assert_eq!((info.base_offset, info.end_offset()), (10, 14), "the batch keeps its span");
        let mut d = data.clone();
        let set = RecordBatchDecoder::decode(&mut d).expect("decode");
        let kept: Vec<(i64, Option<Bytes>)> = set.records.iter().map(|r| (r.offset, r.key.clone())).collect();
        assert_eq!(kept, vec![(12, Some(Bytes::from("a"))), (13, Some(Bytes::from("c")))]);
        assert_eq!(set.records[0].sequence, 102, "sequences stay with their offsets");
        assert!(records::validate(&data).is_ok(), "a valid batch, CRC included");
        // An old tombstone goes too.
        let (_, data) =
            filter_batch(&b, &map, 5000, &[]).expect("filter").expect("changed").expect("not empty");
        let mut d = data.clone();
        assert_eq!(RecordBatchDecoder::decode(&mut d).expect("decode").records.len(), 1);
        // The latest of its keys: unchanged. Nothing left: dropped.
        assert_eq!(filter_batch(&later, &map, 0, &[]).expect("filter"), None);
        let gone = batch(5, &[(Some("b"), Some("0"))]);
        assert_eq!(filter_batch(&gone, &map, 0, &[]).expect("filter"), Some(None));
    }

    /// Kafka's cleaner discards the data of aborted transactions; committed
    /// transactional data is cleaned like any other.
    #[test]
    fn data_of_aborted_transactions_is_discarded() {
        use crate::producer_state::AbortedTxn;
        let aborted = [AbortedTxn { producer_id: 9, first_offset: 10, last_offset: 13 }];
        let in_aborted = batch_with(9, true, 10, &[(Some("a"), Some("x")), (Some("b"), Some("y"))]);
        let committed = batch_with(9, true, 20, &[(Some("a"), Some("z"))]);
        let other_producer = batch_with(8, true, 11, &[(Some("c"), Some("w"))]);
        let map = HashMap::new();
        assert_eq!(
            filter_batch(&in_aborted, &map, 0, &aborted).expect("filter"),
            Some(None),
            "discarded whole"
        );
        assert_eq!(filter_batch(&committed, &map, 0, &aborted).expect("filter"), None, "kept");
        assert_eq!(
            filter_batch(&other_producer, &map, 0, &aborted).expect("filter"),
            None,
            "another producer's"
        );
        let mut keys = HashMap::new();
        map_keys(&[in_aborted, committed], &mut keys, &aborted).expect("map");
        assert_eq!(keys.get(&Bytes::from("a")), Some(&20));
        assert_eq!(keys.get(&Bytes::from("b")), None, "an aborted record replaces nothing");
    }
}
