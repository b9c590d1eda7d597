package dev.strata;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strata.Brokers.Broker;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.AbortTransactionSpec;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TransactionalIdNotFoundException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Transactions with the Java client on both brokers: commits and aborts
 * interleaved across partitions as each isolation level sees them, and a
 * second instance fencing the first. Both brokers finalize transaction.version 2
 * by default, so the client uses KIP-890's second protocol (an epoch bump at
 * every end, partitions added by Produce v12); the suite runs again with
 * both at version 1, the first protocol (java_clients.rs).
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

  /** Everything a consumer at {@code isolation} reads from the start to the end it is told (endOffsets: the LSO for read_committed), each once. */
  static Set<String> readAll(Broker b, String topic, String isolation) throws InterruptedException {
    List<String> read = readList(b, topic, isolation);
    Set<String> out = new HashSet<>(read);
    assertEquals(read.size(), out.size(), "a message was read twice: " + read);
    return out;
  }

  /**
   * Reads until a reader at {@code isolation} sees exactly {@code want}: a
   * commit's markers follow its acknowledgement, so what it committed
   * becomes visible shortly after.
   */
  static void assertSees(Broker b, String topic, String isolation, Set<String> want, String what)
      throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    Set<String> seen = readAll(b, topic, isolation);
    while (!seen.equals(want) && System.nanoTime() < deadline) {
      Thread.sleep(100);
      seen = readAll(b, topic, isolation);
    }
    assertEquals(want, seen, what);
  }

  /** Like {@link #readAll}, every message in the order read. */
  static List<String> readList(Broker b, String topic, String isolation) throws InterruptedException {
    Properties extra = new Properties();
    extra.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
    List<String> out = new ArrayList<>();
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
      assertSees(b, topic, "read_committed", committed, "read_committed sees the committed messages");
      assertSees(b, topic, "read_uncommitted", all, "read_uncommitted sees all");
      // An open transaction: read_committed stops before it.
      p.beginTransaction();
      List<String> open = send(p, topic, "open", 3);
      assertEquals(committed, readAll(b, topic, "read_committed"), "nothing of the open transaction");
      Set<String> withOpen = new HashSet<>(all);
      withOpen.addAll(open);
      assertSees(b, topic, "read_uncommitted", withOpen, "read_uncommitted sees the open transaction");
      p.commitTransaction();
      committed.addAll(open);
      assertSees(b, topic, "read_committed", committed, "then its messages");
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
        assertSees(b, topic, "read_committed", new HashSet<>(good), "only the current instance's commit");
      }
    }
  }

  static KafkaConsumer<byte[], byte[]> groupConsumer(Broker b, String group, String topic) {
    Properties extra = new Properties();
    extra.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    extra.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    KafkaConsumer<byte[], byte[]> c = Brokers.consumer(b, extra);
    c.subscribe(List.of(topic));
    return c;
  }

  /** The consumer's position on every partition it holds. */
  static Map<TopicPartition, OffsetAndMetadata> positions(KafkaConsumer<byte[], byte[]> c) {
    Map<TopicPartition, OffsetAndMetadata> out = new HashMap<>();
    for (TopicPartition tp : c.assignment()) {
      out.put(tp, new OffsetAndMetadata(c.position(tp)));
    }
    return out;
  }

  /**
   * Consume-transform-produce with the offsets in the transaction
   * (sendOffsetsToTransaction): an aborted round changes nothing, and across a
   * restart of the consumer and the producer every input record is in the
   * output exactly once, with the group's offsets at the input's end.
   */
  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void consumeTransformProduceIsExactlyOnceAcrossARestart(Broker b) throws Exception {
    String in = Brokers.topic("eos-in");
    String out = Brokers.topic("eos-out");
    Brokers.createTopic(b, in, PARTITIONS, Map.of());
    Brokers.createTopic(b, out, PARTITIONS, Map.of());
    String group = Brokers.topic("eos-group");
    int total = 60;
    try (KafkaProducer<byte[], byte[]> plain = new KafkaProducer<>(Brokers.producerProps(b))) {
      for (int i = 0; i < total; i++) {
        plain.send(new ProducerRecord<>(in, i % PARTITIONS, null, ("v" + i).getBytes(StandardCharsets.UTF_8)));
      }
    }
    int copied = 0;
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    for (int instance = 0; instance < 2 && copied < total; instance++) {
      try (KafkaConsumer<byte[], byte[]> c = groupConsumer(b, group, in);
          KafkaProducer<byte[], byte[]> p = transactional(b, group + "-tx")) {
        boolean abortedOnce = instance > 0;
        while (copied < total && (instance > 0 || copied < total / 3)) {
          assertTrue(System.nanoTime() < deadline, "copied " + copied + " of " + total);
          ConsumerRecords<byte[], byte[]> records = c.poll(Duration.ofMillis(200));
          if (records.isEmpty()) {
            continue;
          }
          p.beginTransaction();
          for (ConsumerRecord<byte[], byte[]> r : records) {
            p.send(new ProducerRecord<>(out, r.partition(), null, ("x" + new String(r.value(), StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8)));
          }
          p.sendOffsetsToTransaction(positions(c), c.groupMetadata());
          if (!abortedOnce) {
            // The first round aborts: its output and its offsets are void.
            p.abortTransaction();
            abortedOnce = true;
            for (TopicPartition tp : c.assignment()) {
              OffsetAndMetadata committed = c.committed(Set.of(tp)).get(tp);
              if (committed == null) {
                c.seekToBeginning(List.of(tp));
              } else {
                c.seek(tp, committed.offset());
              }
            }
            continue;
          }
          p.commitTransaction();
          copied += records.count();
        }
      }
    }
    assertEquals(total, copied);
    Set<String> want = new HashSet<>();
    for (int i = 0; i < total; i++) {
      want.add("xv" + i);
    }
    assertSees(b, out, "read_committed", want, "every input once in the output");
    try (Admin admin = Brokers.admin(b)) {
      long committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS)
          .values().stream().mapToLong(OffsetAndMetadata::offset).sum();
      assertEquals(total, committed, "the group's offsets are at the input's end");
    }
  }

  static List<String> listed(Admin admin, ListTransactionsOptions options, String prefix) throws Exception {
    List<String> ids = new ArrayList<>();
    for (TransactionListing l : admin.listTransactions(options).all().get(30, TimeUnit.SECONDS)) {
      if (l.transactionalId().startsWith(prefix)) {
        ids.add(l.transactionalId() + " " + l.state());
      }
    }
    ids.sort(String::compareTo);
    return ids;
  }

  static List<ProducerState> producersOf(Admin admin, TopicPartition tp) throws Exception {
    return admin.describeProducers(List.of(tp)).all().get(30, TimeUnit.SECONDS).get(tp).activeProducers();
  }

  static long stableEnd(Broker b, TopicPartition tp) {
    Properties extra = new Properties();
    extra.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    try (KafkaConsumer<byte[], byte[]> c = Brokers.consumer(b, extra)) {
      return c.endOffsets(List.of(tp)).get(tp);
    }
  }

  /**
   * The transaction admin (KIP-664) as kafka-transactions uses it: an open
   * transaction as listTransactions, describeTransactions and
   * describeProducers show it, then committed; a hanging one aborted with
   * abortTransaction (WriteTxnMarkers to the partition), after which the
   * last stable offset moves on.
   */
  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void theAdminListsDescribesAndAbortsTransactions(Broker b) throws Exception {
    String topic = Brokers.topic("txn-admin");
    Brokers.createTopic(b, topic, PARTITIONS, Map.of());
    String id = topic + "-tx";
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);
    try (Admin admin = Brokers.admin(b); KafkaProducer<byte[], byte[]> p = transactional(b, id)) {
      p.beginTransaction();
      p.send(new ProducerRecord<>(topic, 0, null, "a".getBytes(StandardCharsets.UTF_8)));
      p.send(new ProducerRecord<>(topic, 1, null, "b".getBytes(StandardCharsets.UTF_8)));
      p.send(new ProducerRecord<>(topic, 1, null, "c".getBytes(StandardCharsets.UTF_8)));
      p.flush();
      assertEquals(List.of(id + " Ongoing"), listed(admin, new ListTransactionsOptions(), topic));
      assertEquals(List.of(id + " Ongoing"),
          listed(admin, new ListTransactionsOptions().filterStates(List.of(TransactionState.ONGOING)), topic));
      assertEquals(List.of(),
          listed(admin, new ListTransactionsOptions().filterStates(List.of(TransactionState.COMPLETE_ABORT)), topic));
      TransactionDescription d = admin.describeTransactions(List.of(id)).all().get(30, TimeUnit.SECONDS).get(id);
      assertEquals(TransactionState.ONGOING, d.state());
      assertEquals(Set.of(p0, p1), d.topicPartitions());
      assertEquals(60000, d.transactionTimeoutMs());
      assertTrue(d.transactionStartTimeMs().isPresent(), "a start time");
      assertEquals(List.of(id + " Ongoing"),
          listed(admin, new ListTransactionsOptions().filterProducerIds(Set.of(d.producerId())), topic));
      ExecutionException unknown = assertThrows(ExecutionException.class,
          () -> admin.describeTransactions(List.of(id + "-never")).all().get(30, TimeUnit.SECONDS));
      assertTrue(unknown.getCause() instanceof TransactionalIdNotFoundException, unknown.toString());

      List<ProducerState> on1 = producersOf(admin, p1);
      assertEquals(1, on1.size(), on1.toString());
      assertEquals(d.producerId(), on1.get(0).producerId());
      assertEquals(d.producerEpoch(), on1.get(0).producerEpoch());
      assertEquals(1, on1.get(0).lastSequence(), "two records: sequences 0 and 1");
      assertEquals(0L, on1.get(0).currentTransactionStartOffset().orElse(-1), "the open transaction starts at 0");
      assertEquals(List.of(), producersOf(admin, new TopicPartition(topic, 2)));
      assertEquals(0L, stableEnd(b, p1), "the open transaction holds the last stable offset");

      p.commitTransaction();
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (!listed(admin, new ListTransactionsOptions(), topic).equals(List.of(id + " CompleteCommit"))) {
        assertTrue(System.nanoTime() < deadline, listed(admin, new ListTransactionsOptions(), topic).toString());
        Thread.sleep(50);
      }
      assertTrue(producersOf(admin, p1).get(0).currentTransactionStartOffset().isEmpty(), "committed");
    }

    // A hanging transaction: its producer never ends it.
    String hangingId = topic + "-hanging";
    Properties props = Brokers.producerProps(b);
    props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, hangingId);
    props.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "600000");
    TopicPartition p2 = new TopicPartition(topic, 2);
    try (Admin admin = Brokers.admin(b); KafkaProducer<byte[], byte[]> hanging = new KafkaProducer<>(props)) {
      hanging.initTransactions();
      hanging.beginTransaction();
      for (int i = 0; i < 3; i++) {
        hanging.send(new ProducerRecord<>(topic, 2, null, ("h" + i).getBytes(StandardCharsets.UTF_8)));
      }
      hanging.flush();
      assertEquals(0L, stableEnd(b, p2));
      ProducerState s = producersOf(admin, p2).get(0);
      assertEquals(0L, s.currentTransactionStartOffset().orElse(-1));
      admin.abortTransaction(new AbortTransactionSpec(p2, s.producerId(), (short) s.producerEpoch(),
          s.coordinatorEpoch().orElse(0))).all().get(30, TimeUnit.SECONDS);
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (stableEnd(b, p2) != 4L) {
        assertTrue(System.nanoTime() < deadline, "the last stable offset is " + stableEnd(b, p2));
        Thread.sleep(50);
      }
      assertTrue(producersOf(admin, p2).get(0).currentTransactionStartOffset().isEmpty(), "aborted on the partition");
      hanging.abortTransaction();
    }
  }

  /**
   * A transaction left open past its transaction.timeout.ms is aborted by the
   * coordinator (which checks every 10 s, Kafka's default): read_committed
   * consumers move past it and never see its records, and its producer is
   * fenced.
   */
  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void aTimedOutTransactionIsAbortedAndReadCommittedMovesOn(Broker b) throws Exception {
    String topic = Brokers.topic("txn-timeout");
    Brokers.createTopic(b, topic, PARTITIONS, Map.of());
    Properties props = Brokers.producerProps(b);
    props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, topic + "-tx");
    props.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "2000");
    TopicPartition p0 = new TopicPartition(topic, 0);
    try (KafkaProducer<byte[], byte[]> stuck = new KafkaProducer<>(props)) {
      stuck.initTransactions();
      stuck.beginTransaction();
      List<String> lost = send(stuck, topic, "timed-out", 6);
      assertEquals(0L, stableEnd(b, p0), "the open transaction holds the last stable offset");
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (stableEnd(b, p0) == 0L) {
        assertTrue(System.nanoTime() < deadline, "the timed-out transaction was never aborted");
        Thread.sleep(100);
      }
      try (KafkaProducer<byte[], byte[]> next = transactional(b, topic + "-next")) {
        next.beginTransaction();
        List<String> good = send(next, topic, "after", 6);
        next.commitTransaction();
        assertSees(b, topic, "read_committed", new HashSet<>(good), "only the later commit, never " + lost);
      }
      // Its producer was fenced by the abort.
      assertThrows(KafkaException.class, stuck::commitTransaction);
    }
  }
}
