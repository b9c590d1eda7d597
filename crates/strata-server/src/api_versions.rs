//! What the server serves, and the ApiVersions answer (KIP-511 included).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// Every served API with its version range: exactly what ApiVersions advertises.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeTopicPartitions, 0, 0),
];

/// The served version range of an API key, if served.
pub fn served(key: i16) -> Option<(ApiKey, i16, i16)> {
    SUPPORTED_APIS.iter().copied().find(|(k, _, _)| *k as i16 == key)
}

/// The ApiVersions response body; `unsupported` makes it the KIP-511 answer to
/// a version we do not know.
pub fn response(unsupported: bool) -> ApiVersionsResponse {
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
    resp.finalized_features_epoch = -1;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_within_the_codec() {
        for (key, min, max) in SUPPORTED_APIS {
            let codec = key.valid_versions();
            assert!(codec.min <= *min && *max <= codec.max, "{key:?} {min}-{max} vs {codec:?}");
        }
    }
}
