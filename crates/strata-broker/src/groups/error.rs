//! Errors of the group coordinator, each one Kafka error code
//! (`crate::error_codes`).

use thiserror::Error;

/// Why a group request is refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    /// The member id is not in the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The generation is not the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing: rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// The protocol type or protocols do not fit the group.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// The session timeout is outside the broker's bounds.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// KIP-394: join again with the member id in this answer.
    #[error("member id required")]
    MemberIdRequired,
    /// Another member holds this static instance id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The group does not exist.
    #[error("group id not found")]
    GroupIdNotFound,
    /// The group has members.
    #[error("the group is not empty")]
    NonEmptyGroup,
    /// The group id is not acceptable.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The coordinator is still reading its state.
    #[error("coordinator load in progress")]
    CoordinatorLoadInProgress,
    /// The coordinator cannot serve now (its log refused a write).
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// Another broker of the cluster coordinates the group (it leads the
    /// group's partition of `__consumer_offsets`).
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    /// Committed metadata is larger than `offset.metadata.max.bytes`.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// OffsetDelete of a topic the group consumes.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// The topic or partition does not exist.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// KIP-848: the member's epoch is ahead of, or unknown to, the group.
    #[error("fenced member epoch")]
    FencedMemberEpoch,
    /// KIP-848: the member's epoch is behind: heartbeat first.
    #[error("stale member epoch")]
    StaleMemberEpoch,
    /// KIP-848: another member still holds the static instance id.
    #[error("unreleased instance id")]
    UnreleasedInstanceId,
    /// KIP-848: a server assignor the coordinator does not have.
    #[error("unsupported assignor")]
    UnsupportedAssignor,
    /// A malformed group request.
    #[error("invalid request")]
    InvalidRequest,
    /// A subscription regex that does not compile.
    #[error("invalid regular expression")]
    InvalidRegularExpression,
    /// The group has more members than `group.max.size`.
    #[error("group max size reached")]
    GroupMaxSizeReached,
}
