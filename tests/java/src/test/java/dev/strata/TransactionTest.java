package dev.strata;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strata.Brokers.Broker;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Transactions with the Java client on both brokers: commits and aborts
 * interleaved across partitions as each isolation level sees them, and a
 * second instance fencing the first. Strata finalizes transaction.version 1
 * (the client's first transaction protocol); the reference broker finalizes 2.
 */
class TransactionTest {
  static final int PARTITIONS = 3;

  static Stream<Broker> brokers() {
    return Brokers.all().stream();
  }

  static KafkaProducer<byte[], byte[]> transactional(Broker b, String id) {
    Properties p = Brokers.producerProps(b);
    p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
    p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p);
    producer.initTransactions();
    return producer;
  }

  static List<String> send(KafkaProducer<byte[], byte[]> p, String topic, String prefix, int n) {
    List<String> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      String v = prefix + "-" + i;
      p.send(new ProducerRecord<>(topic, i % PARTITIONS, null, v.getBytes(StandardCharsets.UTF_8)));
      out.add(v);
    }
    p.flush();
    return out;
  }

  /** Everything a consumer at {@code isolation} reads from the start to the end it is told (endOffsets: the LSO for read_committed). */
  static Set<String> readAll(Broker b, String topic, String isolation) throws InterruptedException {
    Properties extra = new Properties();
    extra.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
    Set<String> out = new HashSet<>();
    try (KafkaConsumer<byte[], byte[]> c = Brokers.consumer(b, extra)) {
      List<TopicPartition> parts = new ArrayList<>();
      for (int p = 0; p < PARTITIONS; p++) {
        parts.add(new TopicPartition(topic, p));
      }
      c.assign(parts);
      c.seekToBeginning(parts);
      Map<TopicPartition, Long> end = c.endOffsets(parts);
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (!parts.stream().allMatch(tp -> c.position(tp) >= end.get(tp))) {
        assertTrue(System.nanoTime() < deadline, "timed out reading to " + end);
        for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
          out.add(new String(r.value(), StandardCharsets.UTF_8));
        }
      }
    }
    return out;
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void readCommittedSeesExactlyTheCommittedMessages(Broker b) throws Exception {
    String topic = Brokers.topic("txn");
    Brokers.createTopic(b, topic, PARTITIONS, Map.of());
    Set<String> committed = new HashSet<>();
    Set<String> all = new HashSet<>();
    try (KafkaProducer<byte[], byte[]> p = transactional(b, topic + "-tx")) {
      for (int round = 0; round < 4; round++) {
        p.beginTransaction();
        List<String> sent = send(p, topic, "r" + round, 9);
        all.addAll(sent);
        if (round % 2 == 0) {
          p.commitTransaction();
          committed.addAll(sent);
        } else {
          p.abortTransaction();
        }
      }
      assertEquals(committed, readAll(b, topic, "read_committed"));
      assertEquals(all, readAll(b, topic, "read_uncommitted"));
      // An open transaction: read_committed stops before it.
      p.beginTransaction();
      List<String> open = send(p, topic, "open", 3);
      assertEquals(committed, readAll(b, topic, "read_committed"), "nothing of the open transaction");
      Set<String> withOpen = new HashSet<>(all);
      withOpen.addAll(open);
      assertEquals(withOpen, readAll(b, topic, "read_uncommitted"));
      p.commitTransaction();
      committed.addAll(open);
      assertEquals(committed, readAll(b, topic, "read_committed"));
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void aSecondInstanceFencesTheFirst(Broker b) throws Exception {
    String topic = Brokers.topic("txn-fence");
    Brokers.createTopic(b, topic, PARTITIONS, Map.of());
    String id = topic + "-tx";
    try (KafkaProducer<byte[], byte[]> first = transactional(b, id)) {
      first.beginTransaction();
      send(first, topic, "zombie", 6);
      try (KafkaProducer<byte[], byte[]> second = transactional(b, id)) {
        // ProducerFencedException, or InvalidProducerEpochException on the first protocol.
        assertThrows(KafkaException.class, first::commitTransaction);
        second.beginTransaction();
        List<String> good = send(second, topic, "current", 6);
        second.commitTransaction();
        assertEquals(new HashSet<>(good), readAll(b, topic, "read_committed"));
      }
    }
  }
}
