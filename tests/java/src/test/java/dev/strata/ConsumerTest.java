package dev.strata;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.strata.Brokers.Broker;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The Java consumer by assign (no group), on both brokers; log compaction as it reads. */
class ConsumerTest {
  static List<Broker> brokers() {
    return Brokers.all();
  }

  static final long BASE_TS = 1_700_000_000_000L;

  /** Writes {@code n} records to partition 0, record {@code i} at timestamp BASE_TS + 10 i. */
  static String topicWith(Broker b, int n) throws Exception {
    String topic = Brokers.topic("consumer");
    Brokers.createTopic(b, topic, 1, Map.of("message.timestamp.before.max.ms", Long.toString(Long.MAX_VALUE)));
    try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(Brokers.producerProps(b))) {
      for (int i = 0; i < n; i++) {
        p.send(new ProducerRecord<>(topic, 0, BASE_TS + 10L * i, null, ("r" + i).getBytes(StandardCharsets.UTF_8)));
      }
      p.flush();
    }
    return topic;
  }

  static List<ConsumerRecord<byte[], byte[]>> poll(KafkaConsumer<byte[], byte[]> c, int count) {
    List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (out.size() < count && System.nanoTime() < deadline) {
      c.poll(Duration.ofMillis(200)).forEach(out::add);
    }
    return out;
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void assignAndSeek(Broker b) throws Exception {
    String topic = topicWith(b, 100);
    TopicPartition tp = new TopicPartition(topic, 0);
    try (KafkaConsumer<byte[], byte[]> c = Brokers.consumer(b, new Properties())) {
      c.assign(List.of(tp));
      c.seek(tp, 42);
      List<ConsumerRecord<byte[], byte[]>> got = poll(c, 58);
      assertEquals(58, got.size());
      assertEquals(42, got.get(0).offset());
      assertEquals("r42", new String(got.get(0).value(), StandardCharsets.UTF_8));
      assertEquals(BASE_TS + 420, got.get(0).timestamp());
      assertEquals(100, c.position(tp));
      c.seekToBeginning(List.of(tp));
      assertEquals(0, c.position(tp));
      c.seekToEnd(List.of(tp));
      assertEquals(100, c.position(tp));
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void beginningEndAndTimestampOffsets(Broker b) throws Exception {
    String topic = topicWith(b, 100);
    TopicPartition tp = new TopicPartition(topic, 0);
    try (KafkaConsumer<byte[], byte[]> c = Brokers.consumer(b, new Properties())) {
      assertEquals(Map.of(tp, 0L), c.beginningOffsets(List.of(tp)));
      assertEquals(Map.of(tp, 100L), c.endOffsets(List.of(tp)));
      Map<TopicPartition, OffsetAndTimestamp> at = c.offsetsForTimes(Map.of(tp, BASE_TS + 255));
      assertEquals(26, at.get(tp).offset(), "the first record at or after the time");
      assertEquals(BASE_TS + 260, at.get(tp).timestamp());
      assertEquals(0, c.offsetsForTimes(Map.of(tp, 0L)).get(tp).offset());
      assertNull(c.offsetsForTimes(Map.of(tp, BASE_TS + 10_000)).get(tp), "no record that late");
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void readCommittedReadsNonTransactionalData(Broker b) throws Exception {
    String topic = topicWith(b, 50);
    TopicPartition tp = new TopicPartition(topic, 0);
    Properties extra = new Properties();
    extra.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    try (KafkaConsumer<byte[], byte[]> c = Brokers.consumer(b, extra)) {
      assertEquals(Map.of(tp, 50L), c.endOffsets(List.of(tp)), "the last stable offset is the end");
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      List<ConsumerRecord<byte[], byte[]>> got = poll(c, 50);
      assertEquals(50, got.size());
      for (int i = 0; i < 50; i++) {
        assertEquals(i, got.get(i).offset());
      }
    }
  }

  /** Every record of partition 0 from its start to its end offset now. */
  static List<ConsumerRecord<byte[], byte[]>> readAll(Broker b, String topic) {
    List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
    TopicPartition tp = new TopicPartition(topic, 0);
    try (KafkaConsumer<byte[], byte[]> c = Brokers.consumer(b, new Properties())) {
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      long end = c.endOffsets(List.of(tp)).get(tp);
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (c.position(tp) < end) {
        if (System.nanoTime() > deadline) {
          fail("read to " + c.position(tp) + " of " + end);
        }
        c.poll(Duration.ofMillis(200)).forEach(out::add);
      }
    }
    return out;
  }

  /**
   * Many updates of ten keys compact to the latest value of each, at the
   * offset it was written at, older offsets gone, in offset order: what a
   * consumer from the start sees, on Strata as on Kafka (their cleaners run
   * with their default backoff; the test's topic rolls every 100 ms).
   */
  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void aCompactedTopicKeepsTheLatestValueOfEachKey(Broker b) throws Exception {
    String topic = Brokers.topic("compacted");
    Brokers.createTopic(b, topic, 1,
        Map.of("cleanup.policy", "compact", "segment.ms", "100", "min.cleanable.dirty.ratio", "0.01"));
    Map<String, Long> latestOffset = new HashMap<>();
    Map<String, String> latestValue = new HashMap<>();
    try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(Brokers.producerProps(b))) {
      for (int round = 0; round < 20; round++) {
        for (int k = 0; k < 10; k++) {
          String key = "k" + k;
          String value = key + "-" + round;
          long offset = p.send(new ProducerRecord<>(topic, 0, bytes(key), bytes(value))).get(30, TimeUnit.SECONDS)
              .offset();
          latestOffset.put(key, offset);
          latestValue.put(key, value);
        }
      }
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
      for (int pass = 0; ; pass++) {
        // Appends of another key keep rolling the active segment.
        p.send(new ProducerRecord<>(topic, 0, bytes("roll"), bytes("r" + pass))).get(30, TimeUnit.SECONDS);
        List<ConsumerRecord<byte[], byte[]>> all = readAll(b, topic);
        Map<String, List<ConsumerRecord<byte[], byte[]>>> byKey = new HashMap<>();
        long previous = -1;
        for (ConsumerRecord<byte[], byte[]> r : all) {
          assertTrue(r.offset() > previous, "offset order");
          previous = r.offset();
          String key = new String(r.key(), StandardCharsets.UTF_8);
          if (key.startsWith("k")) {
            byKey.computeIfAbsent(key, x -> new ArrayList<>()).add(r);
          }
        }
        assertEquals(latestValue.keySet(), byKey.keySet(), "every key survives");
        if (byKey.values().stream().allMatch(rs -> rs.size() == 1)) {
          for (Map.Entry<String, List<ConsumerRecord<byte[], byte[]>>> e : byKey.entrySet()) {
            ConsumerRecord<byte[], byte[]> r = e.getValue().get(0);
            assertEquals(latestValue.get(e.getKey()), new String(r.value(), StandardCharsets.UTF_8));
            assertEquals((long) latestOffset.get(e.getKey()), r.offset(), "the survivor keeps its offset");
          }
          assertTrue(all.get(0).offset() > 0, "the oldest offsets are gone");
          return;
        }
        if (System.nanoTime() > deadline) {
          fail("not compacted in 180 s: " + all.size() + " records");
        }
        Thread.sleep(500);
      }
    }
  }

  static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }
}
