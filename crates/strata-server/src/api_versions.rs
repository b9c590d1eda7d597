//! What the server serves, and the ApiVersions answer (KIP-511 included).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

/// Every served API with its version range: exactly what ApiVersions advertises.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    // 0-2 advertised as Kafka 4.1 advertises them (for old clients' version
    // checks); a request at those versions closes the connection, as on
    // Kafka 4.1 (the codec, like Kafka's schema, starts at 3).
    (ApiKey::Produce, 0, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::WriteTxnMarkers, 1, 1),
    // Both transaction protocols (docs/transactions.md): AddPartitionsToTxn
    // v4+, EndTxn v5 and TxnOffsetCommit v5 are KIP-890's second part, which
    // clients use only when transaction.version 2 is finalized. Kafka
    // advertises them whatever the level, and so does Strata.
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The features advertised, `(name, supported min, supported max, finalized
/// level)`: `metadata.version` as Kafka 4.1 (3.3-IV3 = 7 up to 4.1-IV1 = 27).
/// `group.version` 1 as Kafka 4.1: the consumer protocol (KIP-848) is served.
/// `transaction.version` up to 2 (KIP-890's second part), finalized at the
/// broker's `--transaction-version` (the level given here is Kafka 4.1's
/// default, 2): Kafka 4.x Java clients use the second protocol only when 2
/// is finalized (docs/transactions.md).
pub const FEATURES: &[(&str, i16, i16, i16)] =
    &[("metadata.version", 7, 27, 27), ("group.version", 0, 1, 1), ("transaction.version", 0, 2, 2)];

/// The served version range of an API key, if served.
pub fn served(key: i16) -> Option<(ApiKey, i16, i16)> {
    SUPPORTED_APIS.iter().copied().find(|(k, _, _)| *k as i16 == key)
}

/// KIP-511's rule for `client_software_name` and `client_software_version`:
/// letters, digits, `-` and `.`, starting and ending with a letter or digit.
pub fn valid_client_software(req: &kafka_protocol::messages::ApiVersionsRequest) -> bool {
    let ok = |s: &str| {
        let b = s.as_bytes();
        let edge = |c: &u8| c.is_ascii_alphanumeric();
        b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
    };
    ok(req.client_software_name.as_str()) && ok(req.client_software_version.as_str())
}

/// The ApiVersions response body, with `transaction.version` finalized at
/// `transaction_version`; `unsupported` makes it the KIP-511 answer to a
/// version we do not know.
pub fn response(unsupported: bool, transaction_version: i16) -> ApiVersionsResponse {
    let mut resp = ApiVersionsResponse::default();
    if unsupported {
        resp.error_code = ResponseError::UnsupportedVersion.code();
    }
    resp.api_keys = SUPPORTED_APIS
        .iter()
        .map(|(k, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    resp.supported_features = FEATURES
        .iter()
        .map(|(name, min, max, _)| {
            let mut f = SupportedFeatureKey::default();
            f.name = StrBytes::from_static_str(name);
            f.min_version = *min;
            f.max_version = *max;
            f
        })
        .collect();
    resp.finalized_features = FEATURES
        .iter()
        .map(|(name, _, _, level)| {
            let level = if *name == "transaction.version" { transaction_version } else { *level };
            let mut f = FinalizedFeatureKey::default();
            f.name = StrBytes::from_static_str(name);
            f.min_version_level = level;
            f.max_version_level = level;
            f
        })
        .collect();
    // Fixed: the finalized levels never change in a running cluster.
    resp.finalized_features_epoch = 1;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_software_names_follow_kip_511() {
        let req = |name: &str, version: &str| {
            let mut r = kafka_protocol::messages::ApiVersionsRequest::default();
            r.client_software_name = StrBytes::from_string(name.into());
            r.client_software_version = StrBytes::from_string(version.into());
            r
        };
        assert!(valid_client_software(&req("librdkafka", "2.16.0")));
        assert!(valid_client_software(&req("apache-kafka-java", "4.1.2")));
        for (name, version) in [("", "1"), ("x", ""), ("-x", "1"), ("x.", "1"), ("a b", "1"), ("x", "1_0")] {
            assert!(!valid_client_software(&req(name, version)), "{name:?} {version:?}");
        }
    }

    #[test]
    fn advertised_ranges_are_within_the_codec() {
        for (key, min, max) in SUPPORTED_APIS {
            let codec = key.valid_versions();
            // The one exception: Produce 0-2, advertised only (see above).
            let min = if *key == ApiKey::Produce { (*min).max(3) } else { *min };
            assert!(codec.min <= min && *max <= codec.max, "{key:?} {min}-{max} vs {codec:?}");
        }
    }
}
