package dev.strata;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strata.Brokers.Broker;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** AdminClient, on both brokers; topic configs compared between them. */
class AdminTest {
  static List<Broker> brokers() {
    return Brokers.all();
  }

  static final long S = 30;

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void topicsWithConfigsAndIds(Broker b) throws Exception {
    String topic = Brokers.topic("admin");
    Brokers.createTopic(b, topic, 3, Map.of("retention.ms", "123456", "cleanup.policy", "delete"));
    try (Admin admin = Brokers.admin(b)) {
      TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(S, TimeUnit.SECONDS).get(topic);
      assertEquals(3, d.partitions().size());
      assertNotEquals(Uuid.ZERO_UUID, d.topicId());
      TopicDescription byId =
          admin.describeTopics(org.apache.kafka.common.TopicCollection.ofTopicIds(List.of(d.topicId())))
              .allTopicIds().get(S, TimeUnit.SECONDS).get(d.topicId());
      assertEquals(topic, byId.name());
      assertTrue(admin.listTopics().names().get(S, TimeUnit.SECONDS).contains(topic));
      ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
      Config cfg = admin.describeConfigs(List.of(res)).all().get(S, TimeUnit.SECONDS).get(res);
      ConfigEntry retention = cfg.get("retention.ms");
      assertEquals("123456", retention.value());
      assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source());
      assertFalse(retention.isSensitive());
      ConfigEntry segment = cfg.get("segment.bytes");
      assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, segment.source());
      // Incremental alter: set one, delete another.
      admin.incrementalAlterConfigs(Map.of(res, List.of(
          new AlterConfigOp(new ConfigEntry("retention.ms", "999"), AlterConfigOp.OpType.SET),
          new AlterConfigOp(new ConfigEntry("cleanup.policy", ""), AlterConfigOp.OpType.DELETE))))
          .all().get(S, TimeUnit.SECONDS);
      cfg = admin.describeConfigs(List.of(res)).all().get(S, TimeUnit.SECONDS).get(res);
      assertEquals("999", cfg.get("retention.ms").value());
      assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, cfg.get("cleanup.policy").source());
      admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get(S, TimeUnit.SECONDS);
      d = admin.describeTopics(List.of(topic)).allTopicNames().get(S, TimeUnit.SECONDS).get(topic);
      assertEquals(5, d.partitions().size());
      admin.deleteTopics(List.of(topic)).all().get(S, TimeUnit.SECONDS);
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void deleteRecordsAndListOffsetsBySpec(Broker b) throws Exception {
    String topic = Brokers.topic("offsets");
    Brokers.createTopic(b, topic, 1, Map.of("message.timestamp.before.max.ms", Long.toString(Long.MAX_VALUE)));
    long base = 1_700_000_000_000L;
    try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(Brokers.producerProps(b))) {
      for (int i = 0; i < 20; i++) {
        // The largest timestamp at offset 7.
        long ts = i == 7 ? base + 1_000_000 : base + i;
        p.send(new ProducerRecord<>(topic, 0, ts, null, ("v" + i).getBytes(StandardCharsets.UTF_8)));
      }
      p.flush();
    }
    TopicPartition tp = new TopicPartition(topic, 0);
    try (Admin admin = Brokers.admin(b)) {
      Map<TopicPartition, ListOffsetsResultInfo> r;
      r = admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get(S, TimeUnit.SECONDS);
      assertEquals(0, r.get(tp).offset());
      r = admin.listOffsets(Map.of(tp, OffsetSpec.latest())).all().get(S, TimeUnit.SECONDS);
      assertEquals(20, r.get(tp).offset());
      r = admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).all().get(S, TimeUnit.SECONDS);
      assertEquals(7, r.get(tp).offset());
      assertEquals(base + 1_000_000, r.get(tp).timestamp());
      r = admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(base + 10))).all().get(S, TimeUnit.SECONDS);
      assertEquals(7, r.get(tp).offset(), "the first record at or after the time");
      long low = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(12))).lowWatermarks()
          .get(tp).get(S, TimeUnit.SECONDS).lowWatermark();
      assertEquals(12, low);
      r = admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get(S, TimeUnit.SECONDS);
      assertEquals(12, r.get(tp).offset());
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void clusterFeaturesAndLogDirs(Broker b) throws Exception {
    try (Admin admin = Brokers.admin(b)) {
      DescribeClusterResult c = admin.describeCluster();
      assertFalse(c.clusterId().get(S, TimeUnit.SECONDS).isEmpty());
      assertEquals(1, c.nodes().get(S, TimeUnit.SECONDS).size());
      int node = c.nodes().get(S, TimeUnit.SECONDS).iterator().next().id();
      assertEquals(node, c.controller().get(S, TimeUnit.SECONDS).id());
      FeatureMetadata f = admin.describeFeatures().featureMetadata().get(S, TimeUnit.SECONDS);
      assertTrue(f.finalizedFeatures().containsKey("metadata.version"), f.toString());
      assertTrue(f.supportedFeatures().containsKey("metadata.version"), f.toString());
      Map<Integer, Map<String, org.apache.kafka.clients.admin.LogDirDescription>> dirs =
          admin.describeLogDirs(List.of(node)).allDescriptions().get(S, TimeUnit.SECONDS);
      assertEquals(1, dirs.get(node).size());
    }
  }

  /** A topic's configs as the broker reports them: name to value, source, sensitivity, read-only. */
  static Map<String, String> topicConfigs(Broker b) throws Exception {
    String topic = Brokers.topic("configs");
    Brokers.createTopic(b, topic, 1, Map.of("retention.ms", "86400000", "max.message.bytes", "2000000"));
    try (Admin admin = Brokers.admin(b)) {
      ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
      Config cfg = admin.describeConfigs(List.of(res), new DescribeConfigsOptions().includeSynonyms(true))
          .all().get(S, TimeUnit.SECONDS).get(res);
      Map<String, String> out = new TreeMap<>();
      for (ConfigEntry e : cfg.entries()) {
        StringBuilder synonyms = new StringBuilder();
        for (ConfigEntry.ConfigSynonym syn : e.synonyms()) {
          synonyms.append(' ').append(syn.source()).append(':').append(syn.name()).append('=').append(syn.value());
        }
        out.put(e.name(), e.value() + " | " + e.source() + " | " + e.type() + " | sensitive=" + e.isSensitive()
            + " | readOnly=" + e.isReadOnly() + " | synonyms" + synonyms);
      }
      return out;
    }
  }

  @Test
  void topicConfigsMatchKafkaExactly() throws Exception {
    List<Broker> all = Brokers.all();
    Map<String, String> strata = topicConfigs(all.get(0));
    Map<String, String> kafka = topicConfigs(all.get(1));
    assertEquals(kafka.keySet(), strata.keySet(), "config names");
    for (String name : kafka.keySet()) {
      assertEquals(kafka.get(name), strata.get(name), name);
    }
  }
}
