//! The one place where Strata's errors become Kafka error codes.

use kafka_protocol::ResponseError;
use strata_cluster::ClusterError;
use strata_meta::MetaError;
use strata_stream::{ErrorKind as StreamErrorKind, StreamError};

use crate::BrokerError;
use crate::groups::GroupError;

/// The Kafka error for a broker error.
pub fn response_error(err: &BrokerError) -> ResponseError {
    match err {
        BrokerError::CorruptMessage(_) => ResponseError::CorruptMessage,
        BrokerError::UnsupportedMessageFormat(_) => ResponseError::UnsupportedForMessageFormat,
        BrokerError::InvalidRecord(_) | BrokerError::KeylessRecords { .. } => ResponseError::InvalidRecord,
        BrokerError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        BrokerError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        BrokerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        BrokerError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        BrokerError::UnknownTopicId => ResponseError::UnknownTopicId,
        BrokerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        BrokerError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        BrokerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        BrokerError::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
        BrokerError::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
        BrokerError::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        BrokerError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
        BrokerError::UnknownProducerId(_) => ResponseError::UnknownProducerId,
        BrokerError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        BrokerError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        BrokerError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        BrokerError::TransactionAbortable(_) => ResponseError::TransactionAbortable,
        BrokerError::NotEnoughReplicas(_) => ResponseError::NotEnoughReplicas,
        BrokerError::ConcurrentTransactions(_) => ResponseError::ConcurrentTransactions,
        BrokerError::TimedOut(_) => ResponseError::RequestTimedOut,
        BrokerError::Group(e) => group_error(*e),
        BrokerError::Storage(e) => match (e, e.kind()) {
            (StreamError::Closed(_), _) => ResponseError::UnknownTopicOrPartition,
            (StreamError::OutOfRange { .. }, _) => ResponseError::OffsetOutOfRange,
            // Kafka's "outcome unknown" answer: the batch may still land.
            (StreamError::AckTimeout, _) => ResponseError::RequestTimedOut,
            (StreamError::StaleEpoch { .. }, _) => ResponseError::FencedLeaderEpoch,
            (_, StreamErrorKind::NotOwner) => ResponseError::NotLeaderOrFollower,
            // A newer owner serves this data: the client must find it.
            (_, StreamErrorKind::Fenced) => ResponseError::NotLeaderOrFollower,
            // Retriable: nothing acknowledged is lost.
            (_, StreamErrorKind::Transient | StreamErrorKind::Unknown) => ResponseError::KafkaStorageError,
            (_, StreamErrorKind::Corrupt | StreamErrorKind::Request) => ResponseError::KafkaStorageError,
        },
        BrokerError::Cluster(e) => match e {
            ClusterError::TopicExists(_) => ResponseError::TopicAlreadyExists,
            ClusterError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            ClusterError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
            ClusterError::Contended => ResponseError::RequestTimedOut,
            ClusterError::Corrupt { .. } | ClusterError::NodeIdInUse(_) => ResponseError::UnknownServerError,
            ClusterError::Meta(MetaError::Fenced(_)) => ResponseError::NotLeaderOrFollower,
            ClusterError::Meta(_) => ResponseError::KafkaStorageError,
        },
    }
}

/// The Kafka error for a group coordinator error.
pub fn group_error(err: GroupError) -> ResponseError {
    match err {
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        GroupError::UnreleasedInstanceId => ResponseError::UnreleasedInstanceId,
        GroupError::InvalidRequest => ResponseError::InvalidRequest,
        GroupError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
        GroupError::InvalidRegularExpression => ResponseError::InvalidRegularExpression,
    }
}

/// The Kafka error for a transaction coordinator error. `old_version`:
/// the request's version predates PRODUCER_FENCED, so a fence is
/// INVALID_PRODUCER_EPOCH (InitProducerId < 4, the other APIs < 2).
pub fn txn_error(err: crate::txn::TxnError, old_version: bool) -> ResponseError {
    use crate::txn::TxnError;
    match err {
        TxnError::ProducerFenced if old_version => ResponseError::InvalidProducerEpoch,
        TxnError::ProducerFenced => ResponseError::ProducerFenced,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        TxnError::InvalidRequest => ResponseError::InvalidRequest,
    }
}

/// The Kafka error code of a group coordinator error.
pub fn group_code(err: GroupError) -> i16 {
    group_error(err).code()
}

/// The Kafka error code for a broker error.
pub fn code(err: &BrokerError) -> i16 {
    response_error(err).code()
}

/// The message to send alongside the code, where the API has a message field.
pub fn message(err: &BrokerError) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(err.to_string())
}

/// Counts an error answered by `api` in `strata_request_errors_total` (by
/// API and Kafka error name); no error counts nothing.
pub fn count(api: &'static str, code: i16) {
    if code == 0 {
        return;
    }
    let name = match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("code {code}"),
    };
    metrics::counter!("strata_request_errors_total", "api" => api, "error" => name).increment(1);
}
