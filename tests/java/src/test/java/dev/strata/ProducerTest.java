package dev.strata;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strata.Brokers.Broker;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.InvalidRecordException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The Java producer, on both brokers. */
class ProducerTest {
  static List<Broker> brokers() {
    return Brokers.all();
  }

  static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void defaultsAreIdempotentWithAcksAll(Broker b) throws Exception {
    String topic = Brokers.topic("defaults");
    Brokers.createTopic(b, topic, 1, Map.of());
    Properties p = Brokers.producerProps(b);
    ProducerConfig effective = new ProducerConfig(p);
    assertTrue(effective.getBoolean(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG));
    assertEquals("-1", effective.getString(ProducerConfig.ACKS_CONFIG));
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
      // Kafka 3+ defaults, which the broker must serve: idempotence (an
      // InitProducerId before the first produce) and acks=all.
      List<Future<RecordMetadata>> sent = new ArrayList<>();
      for (int i = 0; i < 200; i++) {
        sent.add(producer.send(new ProducerRecord<>(topic, 0, null, bytes("v" + i))));
      }
      for (int i = 0; i < sent.size(); i++) {
        assertEquals(i, sent.get(i).get(30, TimeUnit.SECONDS).offset());
      }
    }
    List<ConsumerRecord<byte[], byte[]>> got = Brokers.readPartition(b, topic, 0, 200, new Properties());
    assertEquals(200, got.size());
    for (int i = 0; i < 200; i++) {
      assertArrayEquals(bytes("v" + i), got.get(i).value());
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void everyCodecRoundTrips(Broker b) throws Exception {
    for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
      String topic = Brokers.topic("codec-" + codec);
      Brokers.createTopic(b, topic, 1, Map.of());
      Properties p = Brokers.producerProps(b);
      p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
      p.put(ProducerConfig.LINGER_MS_CONFIG, "20");
      try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
        for (int i = 0; i < 500; i++) {
          producer.send(new ProducerRecord<>(topic, 0, bytes("k" + i), bytes(codec + " value " + i)));
        }
        producer.flush();
      }
      List<ConsumerRecord<byte[], byte[]>> got = Brokers.readPartition(b, topic, 0, 500, new Properties());
      assertEquals(500, got.size(), codec);
      for (int i = 0; i < 500; i++) {
        assertEquals(i, got.get(i).offset(), codec);
        assertArrayEquals(bytes("k" + i), got.get(i).key(), codec);
        assertArrayEquals(bytes(codec + " value " + i), got.get(i).value(), codec);
      }
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void headersAndNullKeysAndValuesRoundTrip(Broker b) throws Exception {
    String topic = Brokers.topic("headers");
    Brokers.createTopic(b, topic, 1, Map.of());
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(Brokers.producerProps(b))) {
      List<Header> headers = List.of(
          new RecordHeader("h1", bytes("one")), new RecordHeader("h2", null), new RecordHeader("h1", bytes("again")));
      producer.send(new ProducerRecord<>(topic, 0, (byte[]) null, bytes("with headers"), headers)).get(30, TimeUnit.SECONDS);
      producer.send(new ProducerRecord<>(topic, 0, null, null)).get(30, TimeUnit.SECONDS);
      producer.send(new ProducerRecord<>(topic, 0, bytes("key only"), null)).get(30, TimeUnit.SECONDS);
    }
    List<ConsumerRecord<byte[], byte[]>> got = Brokers.readPartition(b, topic, 0, 3, new Properties());
    assertEquals(3, got.size());
    Header[] h = got.get(0).headers().toArray();
    assertEquals(3, h.length);
    assertEquals("h1", h[0].key());
    assertArrayEquals(bytes("one"), h[0].value());
    assertEquals("h2", h[1].key());
    assertNull(h[1].value());
    assertArrayEquals(bytes("again"), h[2].value());
    assertNull(got.get(1).key());
    assertNull(got.get(1).value());
    assertArrayEquals(bytes("key only"), got.get(2).key());
    assertNull(got.get(2).value());
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void oneMebibyteRecords(Broker b) throws Exception {
    String topic = Brokers.topic("large");
    Brokers.createTopic(b, topic, 1, Map.of("max.message.bytes", "2097152"));
    Properties p = Brokers.producerProps(b);
    p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, "2097152");
    byte[] value = new byte[1 << 20];
    for (int i = 0; i < value.length; i++) {
      value[i] = (byte) (i * 31);
    }
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
      for (int i = 0; i < 3; i++) {
        producer.send(new ProducerRecord<>(topic, 0, null, value)).get(30, TimeUnit.SECONDS);
      }
    }
    Properties c = new Properties();
    c.put("max.partition.fetch.bytes", "2097152");
    List<ConsumerRecord<byte[], byte[]>> got = Brokers.readPartition(b, topic, 0, 3, c);
    assertEquals(3, got.size());
    for (ConsumerRecord<byte[], byte[]> r : got) {
      assertArrayEquals(value, r.value());
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void fiveInFlightRequestsKeepOrder(Broker b) throws Exception {
    String topic = Brokers.topic("inflight");
    Brokers.createTopic(b, topic, 2, Map.of());
    Properties p = Brokers.producerProps(b);
    p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
    p.put(ProducerConfig.BATCH_SIZE_CONFIG, "512");
    p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
    int n = 5000;
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
      for (int i = 0; i < n; i++) {
        producer.send(new ProducerRecord<>(topic, i % 2, null, bytes(Integer.toString(i))));
      }
      producer.flush();
    }
    for (int part = 0; part < 2; part++) {
      List<ConsumerRecord<byte[], byte[]>> got = Brokers.readPartition(b, topic, part, n / 2, new Properties());
      assertEquals(n / 2, got.size());
      for (int i = 0; i < got.size(); i++) {
        assertEquals(Integer.toString(i * 2 + part), new String(got.get(i).value(), StandardCharsets.UTF_8));
      }
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void aPartitionThatDoesNotExistTimesOut(Broker b) throws Exception {
    String topic = Brokers.topic("timeout");
    Brokers.createTopic(b, topic, 1, Map.of());
    Properties p = Brokers.producerProps(b);
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "2000");
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "3000");
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "1000");
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
      long started = System.nanoTime();
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> producer.send(new ProducerRecord<>(topic, 7, null, bytes("nowhere"))).get(30, TimeUnit.SECONDS));
      assertInstanceOf(TimeoutException.class, e.getCause());
      assertTrue(System.nanoTime() - started < TimeUnit.SECONDS.toNanos(20), "the delivery timeout bounds it");
      // The producer still works for partitions that exist.
      assertEquals(0, producer.send(new ProducerRecord<>(topic, 0, null, bytes("here"))).get(30, TimeUnit.SECONDS).offset());
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void aCompactedTopicRefusesRecordsWithoutAKey(Broker b) throws Exception {
    String topic = Brokers.topic("compacted");
    Brokers.createTopic(b, topic, 1, Map.of("cleanup.policy", "compact"));
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(Brokers.producerProps(b))) {
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> producer.send(new ProducerRecord<>(topic, 0, null, bytes("no key"))).get(30, TimeUnit.SECONDS));
      assertInstanceOf(InvalidRecordException.class, e.getCause());
      assertEquals("Compacted topic cannot accept message without key in topic partition " + topic + "-0",
          e.getCause().getMessage());
      // A keyed record is taken, at offset 0: nothing of the refused one stayed.
      assertEquals(0, producer.send(new ProducerRecord<>(topic, 0, bytes("k"), bytes("keyed")))
          .get(30, TimeUnit.SECONDS).offset());
    }
  }
}
