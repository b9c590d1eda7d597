//! One transactional id's state (Kafka's `TransactionMetadata`) and the
//! coordinator's checks of each request against it
//! (`docs/transactions-kafka.md` §2-3), over an injected clock. A request
//! that changes the state is turned into the next state, which the
//! coordinator writes to `__transaction_state` and applies once durable
//! (`TxnMeta::apply`); until then the id has a pending transition and
//! other requests get CONCURRENT_TRANSACTIONS, as on Kafka.

use std::collections::{BTreeMap, BTreeSet};

use super::records::{TxnState, TxnValue};

/// From this epoch on a producer id is rotated rather than bumped
/// (`Short.MAX_VALUE - 1`: the last epoch is kept for fencing).
pub const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

/// Why a transactional request is refused, each one Kafka error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// An older instance of the producer (PRODUCER_FENCED, or
    /// INVALID_PRODUCER_EPOCH for old request versions).
    #[error("there is a newer producer with the same transactionalId which fences the current one")]
    ProducerFenced,
    /// The producer id is not the transactional id's.
    #[error(
        "the producer attempted to use a producer id which is not currently assigned to its transactional id"
    )]
    InvalidProducerIdMapping,
    /// The request does not fit the transaction's state.
    #[error("the producer attempted a transactional operation in an invalid state")]
    InvalidTxnState,
    /// A transition is being written, or the last transaction is completing: retry.
    #[error(
        "the producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing"
    )]
    ConcurrentTransactions,
    /// The timeout is above `transaction.max.timeout.ms` (or not positive).
    #[error("the transaction timeout is larger than the maximum value allowed by the broker")]
    InvalidTransactionTimeout,
    /// The coordinator is still reading its partition.
    #[error("the coordinator is loading and hence can't process requests")]
    CoordinatorLoadInProgress,
    /// The coordinator cannot write now.
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    /// Another broker of the cluster coordinates the id.
    #[error("this is not the correct coordinator")]
    NotCoordinator,
    /// The transactional id is unknown (DescribeTransactions).
    #[error("the transactionalId could not be found")]
    TransactionalIdNotFound,
    /// A malformed request.
    #[error("this most likely occurs because of a request being malformed by the client library")]
    InvalidRequest,
}

/// A transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    /// The id before an epoch overflow rotated it (-1: none).
    pub previous_producer_id: i64,
    /// The id a transaction ending at an exhausted epoch rotates to once
    /// complete (transaction version 2; -1: none).
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, for retried bumps (-1: none).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (-1: none).
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// The transaction version of the request behind the last change.
    pub client_tv: i16,
    /// The state a transition being written moves to.
    pub pending: Option<TxnState>,
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Write this state, then answer with its producer id and epoch.
    Write(TxnMeta),
    /// The producer's open transaction must end first: write this
    /// (PrepareAbort at the next epoch), end it, and answer
    /// CONCURRENT_TRANSACTIONS (the client retries).
    FenceAndAbort(TxnMeta),
    /// A retry of a bump already made: answer this id and epoch.
    Answer(i64, i16),
    /// The epoch is exhausted: call again with a fresh producer id.
    NeedsProducerId,
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Write this Prepare state, answer, then write the markers.
    Prepare(TxnMeta),
    /// A retry of an EndTxn already done: answer at once.
    Done,
    /// Transaction version 2 at an exhausted epoch: call again with a fresh
    /// producer id, which the transaction rotates to once complete.
    NeedsProducerId,
}

fn bump(epoch: i16) -> i16 {
    if epoch < i16::MAX { epoch + 1 } else { epoch }
}

impl TxnMeta {
    /// A transactional id seen for the first time, with a fresh producer id.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMeta {
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_tv: 0,
            pending: None,
        }
    }

    /// The state as its last record left it.
    pub fn from_value(v: TxnValue) -> Self {
        TxnMeta {
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: -1,
            timeout_ms: v.timeout_ms,
            state: v.state,
            partitions: v
                .partitions
                .into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                .collect(),
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
            client_tv: v.client_transaction_version,
            pending: None,
        }
    }

    /// The record of this state.
    pub fn to_value(&self) -> TxnValue {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in &self.partitions {
            by_topic.entry(t).or_default().push(*p);
        }
        TxnValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            next_producer_epoch: -1,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: by_topic.into_iter().map(|(t, ps)| (t.to_string(), ps)).collect(),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_tv,
        }
    }

    /// Marks `next` as being written.
    pub fn begin(&mut self, next: &TxnMeta) {
        self.pending = Some(next.state);
    }

    /// Applies a transition once durable.
    pub fn apply(&mut self, next: TxnMeta) {
        *self = TxnMeta { pending: None, ..next };
    }

    /// Drops a transition whose write failed.
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    fn next(&self, state: TxnState, now_ms: i64) -> TxnMeta {
        TxnMeta { state, last_update_ms: now_ms, pending: None, ..self.clone() }
    }

    /// InitProducerId with this transactional id (`expected`: the
    /// producer's id and epoch, v3+, KIP-360). `fresh` is a new producer id
    /// when the caller had to get one (`InitOutcome::NeedsProducerId`).
    pub fn init(
        &self,
        expected: Option<(i64, i16)>,
        timeout_ms: i32,
        now_ms: i64,
        fresh: Option<i64>,
    ) -> Result<InitOutcome, TxnError> {
        if self.pending.is_some() {
            return Err(TxnError::ConcurrentTransactions);
        }
        if let Some((pid, epoch)) = expected {
            let known = self.producer_epoch == -1
                || pid == self.producer_id
                || (pid == self.previous_producer_id && epoch >= EPOCH_EXHAUSTED);
            if !known {
                return Err(TxnError::ProducerFenced);
            }
        }
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // Fence the open transaction's producer and abort it.
                let mut next = self.next(TxnState::PrepareAbort, now_ms);
                next.producer_epoch = bump(self.producer_epoch);
                next.last_producer_epoch = -1;
                Ok(InitOutcome::FenceAndAbort(next))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Dead => {
                let mut next = self.next(TxnState::Empty, now_ms);
                next.partitions.clear();
                next.start_ms = -1;
                next.timeout_ms = timeout_ms;
                let expected_epoch = expected.map(|(_, e)| e);
                if self.producer_epoch >= EPOCH_EXHAUSTED
                    && expected_epoch.is_none_or(|e| e == self.producer_epoch)
                {
                    let Some(pid) = fresh else { return Ok(InitOutcome::NeedsProducerId) };
                    next.previous_producer_id = self.producer_id;
                    next.producer_id = pid;
                    next.producer_epoch = 0;
                    next.last_producer_epoch = if expected.is_some() { self.producer_epoch } else { -1 };
                    return Ok(InitOutcome::Write(next));
                }
                match expected_epoch {
                    None => {
                        next.producer_epoch = self.producer_epoch + 1;
                        next.last_producer_epoch = -1;
                    }
                    Some(e) if e == self.producer_epoch || self.producer_epoch == -1 => {
                        next.producer_epoch = self.producer_epoch + 1;
                        next.last_producer_epoch = self.producer_epoch;
                    }
                    Some(e) if e == self.last_producer_epoch => {
                        return Ok(InitOutcome::Answer(self.producer_id, self.producer_epoch));
                    }
                    Some(_) => return Err(TxnError::ProducerFenced),
                }
                Ok(InitOutcome::Write(next))
            }
        }
    }

    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if self.pending.is_some() {
            return Err(TxnError::ConcurrentTransactions);
        }
        if producer_id != self.producer_id || self.state == TxnState::Dead {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets
    /// partition): `None` when every partition is in the transaction already.
    pub fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        client_tv: i16,
        now_ms: i64,
    ) -> Result<Option<TxnMeta>, TxnError> {
        self.check_producer(producer_id, epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Err(TxnError::ConcurrentTransactions);
            }
            TxnState::Ongoing if partitions.iter().all(|p| self.partitions.contains(p)) => return Ok(None),
            _ => {}
        }
        let mut next = self.next(TxnState::Ongoing, now_ms);
        if self.state != TxnState::Ongoing {
            next.start_ms = now_ms;
            next.partitions.clear();
        }
        next.partitions.extend(partitions.iter().cloned());
        next.client_tv = client_tv;
        Ok(Some(next))
    }

    /// Whether a partition is in the open transaction of this producer (the
    /// verification of KIP-890 part 1): `Err` as AddPartitionsToTxn's
    /// checks, `Ok(false)` when it is not in the transaction.
    pub fn verify(&self, producer_id: i64, epoch: i16, partition: &(String, i32)) -> Result<bool, TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(self.state == TxnState::Ongoing && self.partitions.contains(partition))
    }

    /// EndTxn of the first transaction protocol (EndTxn v0-4).
    pub fn end(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndOutcome, TxnError> {
        if producer_id != self.producer_id || self.state == TxnState::Dead {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if self.pending.is_some_and(|p| p != TxnState::PrepareEpochFence) {
            return Err(TxnError::ConcurrentTransactions);
        }
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                Ok(EndOutcome::Prepare(self.next(state, now_ms)))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(EndOutcome::Done),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// EndTxn of transaction version 2 (EndTxn v5, KIP-890 part 2;
    /// `docs/transactions-kafka.md` §3): every end bumps the epoch (the
    /// markers carry the bumped one), a retry is a request at the epoch
    /// before the current one, and an abort is accepted with nothing open.
    /// `fresh` is a new producer id when the caller had to get one.
    pub fn end_v2(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
        fresh: Option<i64>,
    ) -> Result<EndOutcome, TxnError> {
        use TxnState::*;
        if self.pending.is_some_and(|p| p != PrepareEpochFence) {
            return Err(TxnError::ConcurrentTransactions);
        }
        let overflow_retry =
            producer_id == self.previous_producer_id && epoch == EPOCH_EXHAUSTED && self.producer_epoch == 0;
        if (producer_id != self.producer_id && !overflow_retry) || self.state == Dead {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        let retry = overflow_retry || (producer_id == self.producer_id && epoch == self.producer_epoch - 1);
        if !retry && epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        let prepare = |state: TxnState| {
            let mut next = self.next(state, now_ms);
            if self.producer_epoch >= EPOCH_EXHAUSTED {
                let Some(pid) = fresh else { return Ok(EndOutcome::NeedsProducerId) };
                next.next_producer_id = pid;
            }
            next.last_producer_epoch = self.producer_epoch;
            next.producer_epoch = bump(self.producer_epoch);
            if self.state != Ongoing {
                // An abort with nothing open: no partitions, started now.
                next.partitions.clear();
                next.start_ms = now_ms;
            }
            next.client_tv = 2;
            Ok(EndOutcome::Prepare(next))
        };
        let target = if commit { PrepareCommit } else { PrepareAbort };
        match (self.state, retry, commit) {
            (Ongoing, false, _) => prepare(target),
            (Empty | CompleteAbort | CompleteCommit, false, false) => prepare(PrepareAbort),
            (CompleteAbort, true, false) | (CompleteCommit, true, true) => Ok(EndOutcome::Done),
            (Ongoing | Empty, true, _) => Err(TxnError::ProducerFenced),
            (PrepareCommit | PrepareAbort, true, _) if self.state == target => {
                Err(TxnError::ConcurrentTransactions)
            }
            // The bumped epoch, the previous transaction's markers still in
            // flight: the client's next EndTxn. Kafka answers PRODUCER_FENCED
            // (fatal), a window it rarely shows since its markers take a
            // millisecond; across brokers they take tens, so this waits for
            // them with a retriable error instead (docs/transactions.md).
            (PrepareCommit | PrepareAbort, false, _) => Err(TxnError::ConcurrentTransactions),
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// The producer id and epoch a transaction version 2 client continues
    /// with once this (Prepare) state is complete.
    pub fn after_completion(&self) -> (i64, i16) {
        if self.next_producer_id >= 0 {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        }
    }

    /// The abort of a transaction past its timeout: its producer is fenced
    /// (the next epoch) and the transaction aborted.
    pub fn fence_and_abort(&self, now_ms: i64) -> TxnMeta {
        let mut next = self.next(TxnState::PrepareAbort, now_ms);
        next.producer_epoch = bump(self.producer_epoch);
        next.last_producer_epoch = -1;
        next
    }

    /// The state once every marker of a Prepare state is written.
    pub fn complete(&self, now_ms: i64) -> TxnMeta {
        let state = if self.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        let mut next = self.next(state, now_ms);
        next.partitions.clear();
        if self.next_producer_id >= 0 {
            // An exhausted epoch's transaction rotates the producer id.
            next.previous_producer_id = self.producer_id;
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
            next.next_producer_id = -1;
        }
        next
    }

    /// Whether the open transaction is past its timeout.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.pending.is_none()
            && self.start_ms >= 0
            && self.start_ms + i64::from(self.timeout_ms) < now_ms
    }

    /// Whether the id has been idle past `transactional.id.expiration.ms`.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        matches!(self.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
            && self.pending.is_none()
            && self.last_update_ms + expiration_ms <= now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(meta: &mut TxnMeta, next: TxnMeta) {
        meta.begin(&next);
        meta.apply(next);
    }

    fn first_init(pid: i64) -> TxnMeta {
        let mut m = TxnMeta::new(pid, 60_000, 0);
        let InitOutcome::Write(next) = m.init(None, 60_000, 1, None).expect("init") else {
            panic!("a write")
        };
        committed(&mut m, next);
        m
    }

    #[test]
    fn a_transaction_goes_from_partitions_to_commit_and_retries_are_answered() {
        let mut m = first_init(7);
        assert_eq!((m.producer_id, m.producer_epoch, m.state), (7, 0, TxnState::Empty));
        let parts = vec![("t".to_string(), 0), ("t".to_string(), 1)];
        let next = m.add_partitions(7, 0, &parts, 0, 10).expect("add").expect("a write");
        assert_eq!((next.state, next.start_ms), (TxnState::Ongoing, 10));
        m.begin(&next);
        assert_eq!(m.add_partitions(7, 0, &parts, 0, 11), Err(TxnError::ConcurrentTransactions), "pending");
        m.apply(next);
        assert_eq!(m.add_partitions(7, 0, &parts[..1], 0, 12), Ok(None), "already in it");
        assert_eq!(m.add_partitions(8, 0, &parts, 0, 12), Err(TxnError::InvalidProducerIdMapping));
        assert_eq!(m.add_partitions(7, 1, &parts, 0, 12), Err(TxnError::ProducerFenced));
        assert_eq!(m.verify(7, 0, &parts[1]), Ok(true));
        assert_eq!(m.verify(7, 0, &("t".to_string(), 5)), Ok(false));
        let EndOutcome::Prepare(prepare) = m.end(7, 0, true, 20).expect("end") else { panic!("prepare") };
        assert_eq!(prepare.state, TxnState::PrepareCommit);
        committed(&mut m, prepare);
        assert_eq!(m.end(7, 0, true, 21), Err(TxnError::ConcurrentTransactions), "markers being written");
        assert_eq!(m.end(7, 0, false, 21), Err(TxnError::InvalidTxnState));
        assert_eq!(m.add_partitions(7, 0, &parts, 0, 21), Err(TxnError::ConcurrentTransactions));
        let done = m.complete(22);
        committed(&mut m, done);
        assert_eq!((m.state, m.partitions.len()), (TxnState::CompleteCommit, 0));
        assert_eq!(m.end(7, 0, true, 23), Ok(EndOutcome::Done), "a retried commit");
        assert_eq!(m.end(7, 0, false, 23), Err(TxnError::InvalidTxnState));
        // The next transaction starts from Complete.
        let next = m.add_partitions(7, 0, &parts[..1], 0, 30).expect("add").expect("a write");
        assert_eq!((next.state, next.start_ms, next.partitions.len()), (TxnState::Ongoing, 30, 1));
    }

    /// Transaction version 2 (EndTxn v5): every end bumps the epoch, a
    /// retry is a request at the epoch before, Kafka's table of answers.
    #[test]
    fn version_2_ends_bump_the_epoch_and_answer_retries_as_kafka() {
        let mut m = first_init(7);
        let parts = vec![("t".to_string(), 0)];
        assert_eq!(m.end_v2(7, 0, true, 5, None), Err(TxnError::InvalidTxnState), "a commit of nothing");
        let next = m.add_partitions(7, 0, &parts, 2, 10).expect("add").expect("a write");
        committed(&mut m, next);
        assert_eq!(m.end_v2(8, 0, true, 20, None), Err(TxnError::InvalidProducerIdMapping));
        assert_eq!(m.end_v2(7, 1, true, 20, None), Err(TxnError::ProducerFenced));
        assert_eq!(m.end_v2(7, -1, true, 20, None), Err(TxnError::ProducerFenced), "a retry while Ongoing");
        let EndOutcome::Prepare(prepare) = m.end_v2(7, 0, true, 20, None).expect("end") else {
            panic!("prepare")
        };
        assert_eq!(
            (prepare.state, prepare.producer_epoch, prepare.last_producer_epoch, prepare.client_tv),
            (TxnState::PrepareCommit, 1, 0, 2),
            "the markers carry the bumped epoch"
        );
        assert_eq!(prepare.after_completion(), (7, 1));
        committed(&mut m, prepare);
        assert_eq!(m.end_v2(7, 0, true, 21, None), Err(TxnError::ConcurrentTransactions), "a retry");
        assert_eq!(m.end_v2(7, 0, false, 21, None), Err(TxnError::InvalidTxnState), "the other result");
        assert_eq!(
            m.end_v2(7, 1, false, 21, None),
            Err(TxnError::ConcurrentTransactions),
            "the next transaction's end at the new epoch waits for the markers"
        );
        assert_eq!(
            m.end_v2(6, 1, true, 21, None),
            Err(TxnError::InvalidProducerIdMapping),
            "another producer"
        );
        assert_eq!(m.end_v2(7, 2, true, 21, None), Err(TxnError::ProducerFenced), "an epoch never issued");
        let done = m.complete(22);
        committed(&mut m, done);
        assert_eq!((m.state, m.producer_epoch), (TxnState::CompleteCommit, 1));
        assert_eq!(m.end_v2(7, 0, true, 23, None), Ok(EndOutcome::Done), "a retried commit");
        assert_eq!(m.end_v2(7, 0, false, 23, None), Err(TxnError::InvalidTxnState));
        assert_eq!(m.end_v2(7, 1, true, 23, None), Err(TxnError::InvalidTxnState));
        // An abort with nothing open is accepted, and bumps.
        let EndOutcome::Prepare(abort) = m.end_v2(7, 1, false, 30, None).expect("end") else {
            panic!("prepare")
        };
        assert_eq!(
            (abort.state, abort.producer_epoch, abort.partitions.len(), abort.start_ms),
            (TxnState::PrepareAbort, 2, 0, 30)
        );
        committed(&mut m, abort);
        let done = m.complete(31);
        committed(&mut m, done);
        assert_eq!(m.end_v2(7, 1, false, 32, None), Ok(EndOutcome::Done), "a retried abort");
        assert_eq!(m.end_v2(7, 1, true, 32, None), Err(TxnError::InvalidTxnState));
        // The old epoch is fenced from the partitions' side too: adds need the current one.
        assert_eq!(m.add_partitions(7, 1, &parts, 2, 33), Err(TxnError::ProducerFenced));
    }

    /// At an exhausted epoch a version 2 end rotates the producer id once
    /// complete, and a retry with the old id and epoch is still a retry.
    #[test]
    fn version_2_rotates_the_producer_id_at_an_exhausted_epoch() {
        let mut m = first_init(7);
        m.producer_epoch = EPOCH_EXHAUSTED;
        let parts = vec![("t".to_string(), 0)];
        let next = m.add_partitions(7, EPOCH_EXHAUSTED, &parts, 2, 10).expect("add").expect("a write");
        committed(&mut m, next);
        assert_eq!(m.end_v2(7, EPOCH_EXHAUSTED, true, 20, None), Ok(EndOutcome::NeedsProducerId));
        let EndOutcome::Prepare(prepare) = m.end_v2(7, EPOCH_EXHAUSTED, true, 20, Some(42)).expect("end")
        else {
            panic!("prepare")
        };
        assert_eq!(
            (prepare.producer_id, prepare.producer_epoch, prepare.next_producer_id),
            (7, i16::MAX, 42)
        );
        assert_eq!(prepare.after_completion(), (42, 0));
        let v = prepare.to_value();
        assert_eq!(TxnMeta::from_value(v).next_producer_id, 42, "the rotation is in the record");
        committed(&mut m, prepare);
        let done = m.complete(21);
        assert_eq!(
            (done.producer_id, done.producer_epoch, done.previous_producer_id, done.next_producer_id),
            (42, 0, 7, -1)
        );
        committed(&mut m, done);
        assert_eq!(m.end_v2(7, EPOCH_EXHAUSTED, true, 22, None), Ok(EndOutcome::Done), "the old id's retry");
        assert_eq!(m.end_v2(7, 5, true, 22, None), Err(TxnError::InvalidProducerIdMapping));
    }

    #[test]
    fn a_new_instance_fences_the_old_one_and_aborts_its_transaction() {
        let mut m = first_init(7);
        let parts = vec![("t".to_string(), 0)];
        let next = m.add_partitions(7, 0, &parts, 0, 10).expect("add").expect("a write");
        committed(&mut m, next);
        // A second producer with the same transactional id.
        let InitOutcome::FenceAndAbort(fence) = m.init(None, 60_000, 20, None).expect("init") else {
            panic!("the open transaction is aborted first")
        };
        assert_eq!((fence.state, fence.producer_epoch), (TxnState::PrepareAbort, 1));
        committed(&mut m, fence);
        assert_eq!(
            m.init(None, 60_000, 21, None),
            Err(TxnError::ConcurrentTransactions),
            "until it completes"
        );
        let done = m.complete(22);
        committed(&mut m, done);
        let InitOutcome::Write(next) = m.init(None, 60_000, 23, None).expect("init") else {
            panic!("a write")
        };
        assert_eq!((next.producer_id, next.producer_epoch, next.state), (7, 2, TxnState::Empty));
        committed(&mut m, next);
        // The old instance is fenced everywhere.
        assert_eq!(m.add_partitions(7, 0, &parts, 0, 24), Err(TxnError::ProducerFenced));
        assert_eq!(m.end(7, 0, true, 24), Err(TxnError::ProducerFenced));
        // A timed-out transaction is fenced the same way.
        let next = m.add_partitions(7, 2, &parts, 0, 100).expect("add").expect("a write");
        committed(&mut m, next);
        assert!(!m.timed_out(100 + 60_000));
        assert!(m.timed_out(100 + 60_001));
        let abort = m.fence_and_abort(60_200);
        assert_eq!((abort.state, abort.producer_epoch), (TxnState::PrepareAbort, 3));
    }

    #[test]
    fn kip_360_bumps_retries_and_exhausted_epochs() {
        let mut m = first_init(7);
        // A bump with the producer's current id and epoch.
        let InitOutcome::Write(next) = m.init(Some((7, 0)), 60_000, 5, None).expect("bump") else { panic!() };
        assert_eq!((next.producer_epoch, next.last_producer_epoch), (1, 0));
        committed(&mut m, next);
        assert_eq!(m.init(Some((7, 0)), 60_000, 6, None), Ok(InitOutcome::Answer(7, 1)), "a retried bump");
        assert_eq!(m.init(Some((9, 0)), 60_000, 6, None), Err(TxnError::ProducerFenced), "another id");
        assert_eq!(m.init(Some((7, 5)), 60_000, 6, None), Err(TxnError::ProducerFenced), "another epoch");
        // An exhausted epoch rotates the producer id.
        m.producer_epoch = EPOCH_EXHAUSTED;
        assert_eq!(m.init(None, 60_000, 7, None), Ok(InitOutcome::NeedsProducerId));
        let InitOutcome::Write(next) = m.init(None, 60_000, 7, Some(42)).expect("rotate") else { panic!() };
        assert_eq!((next.producer_id, next.producer_epoch, next.previous_producer_id), (42, 0, 7));
    }

    #[test]
    fn state_round_trips_through_its_record() {
        let mut m = first_init(7);
        let next = m.add_partitions(7, 0, &[("a".into(), 1), ("b".into(), 0), ("a".into(), 0)], 0, 10);
        committed(&mut m, next.expect("add").expect("a write"));
        let back = TxnMeta::from_value(m.to_value());
        assert_eq!(TxnMeta { last_producer_epoch: m.last_producer_epoch, ..back }, m);
        assert_eq!(m.to_value().partitions, vec![("a".to_string(), vec![0, 1]), ("b".to_string(), vec![0])]);
    }
}
