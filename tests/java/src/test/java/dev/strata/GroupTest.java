package dev.strata;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strata.Brokers.Broker;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Consumer groups of the classic protocol with the Java client, on both
 * brokers: three and more members over six partitions, ownership taken from
 * every member's rebalance callbacks across generations.
 */
class GroupTest {
  static final int PARTITIONS = 6;
  static final int RECORDS = 600;

  /** Each broker with each protocol and assignor: classic with eager range and cooperative-sticky, KIP-848's with its server assignors. */
  static Stream<Arguments> brokersAndAssignors() {
    List<Arguments> out = new ArrayList<>();
    for (Broker b : Brokers.all()) {
      out.add(Arguments.of(b, "classic", "org.apache.kafka.clients.consumer.RangeAssignor"));
      out.add(Arguments.of(b, "classic", "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"));
      out.add(Arguments.of(b, "consumer", "uniform"));
      out.add(Arguments.of(b, "consumer", "range"));
    }
    return out.stream();
  }

  static Stream<Arguments> brokersAndProtocols() {
    List<Arguments> out = new ArrayList<>();
    for (Broker b : Brokers.all()) {
      out.add(Arguments.of(b, "classic"));
      out.add(Arguments.of(b, "consumer"));
    }
    return out.stream();
  }

  static Properties protocol(String protocol, String assignor) {
    Properties p = new Properties();
    p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
    if (protocol.equals("consumer")) {
      if (assignor != null) {
        p.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, assignor);
      }
    } else if (assignor != null) {
      p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor);
    }
    return p;
  }

  /** Who owns what, from the members' callbacks; a violation is recorded, never thrown in a callback. */
  static final class Ownership {
    final Map<TopicPartition, String> owner = new ConcurrentHashMap<>();
    final List<String> violations = new CopyOnWriteArrayList<>();

    synchronized void assigned(String member, Collection<TopicPartition> parts) {
      for (TopicPartition p : parts) {
        String was = owner.putIfAbsent(p, member);
        if (was != null && !was.equals(member)) {
          violations.add(p + " assigned to " + member + " while " + was + " owns it");
        }
      }
    }

    synchronized void revoked(String member, Collection<TopicPartition> parts) {
      for (TopicPartition p : parts) {
        owner.remove(p, member);
      }
    }

    synchronized Map<String, Set<TopicPartition>> byMember() {
      Map<String, Set<TopicPartition>> out = new HashMap<>();
      owner.forEach((p, m) -> out.computeIfAbsent(m, k -> new HashSet<>()).add(p));
      return out;
    }
  }

  /** One member: a consumer polling in its own thread, committing what it reads. */
  static final class Member implements AutoCloseable {
    final String name;
    final Thread thread;
    final AtomicBoolean running = new AtomicBoolean(true);
    final AtomicInteger revocations = new AtomicInteger();
    final AtomicInteger assignments = new AtomicInteger();
    final Set<TopicPartition> revokedEver = ConcurrentHashMap.newKeySet();
    final Set<String> seen;
    final List<Throwable> errors = new CopyOnWriteArrayList<>();
    volatile int generation = -1;

    Member(Broker b, String group, String topic, String name, Properties extra, Ownership own, Set<String> seen) {
      this.name = name;
      this.seen = seen;
      Properties p = new Properties();
      p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
      p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "50");
      p.putAll(extra);
      thread = new Thread(() -> {
        try (KafkaConsumer<byte[], byte[]> c = Brokers.consumer(b, p)) {
          c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
              if (!parts.isEmpty()) {
                revocations.incrementAndGet();
                revokedEver.addAll(parts);
              }
              own.revoked(name, parts);
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> parts) {
              assignments.incrementAndGet();
              own.assigned(name, parts);
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> parts) {
              own.revoked(name, parts);
            }
          });
          while (running.get()) {
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
              seen.add(new String(r.value(), StandardCharsets.UTF_8));
            }
            generation = c.groupMetadata().generationId();
            if (!c.assignment().isEmpty()) {
              try {
                c.commitSync();
              } catch (RebalanceInProgressException | CommitFailedException e) {
                // A rebalance is under way: commit again after it, as applications do.
              }
            }
          }
          // A static member leaves nothing behind: the group keeps its place.
          own.revoked(name, c.assignment());
        } catch (Throwable t) {
          errors.add(t);
        }
      }, name);
      thread.start();
    }

    @Override
    public void close() throws InterruptedException {
      running.set(false);
      thread.join(60_000);
    }
  }

  static void closeAll(List<Member> members) throws InterruptedException {
    for (Member m : members) {
      m.close();
    }
  }

  static void assertNoErrors(List<Member> members) {
    for (Member m : members) {
      assertEquals(List.of(), m.errors, m.name + " failed");
    }
  }

  static void await(String what, BooleanSupplier cond) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (!cond.getAsBoolean()) {
      assertTrue(System.nanoTime() < deadline, "timed out waiting for " + what);
      Thread.sleep(50);
    }
  }

  /** Every partition owned by exactly one of {@code members}, each of them owning at least one. */
  static boolean settled(Ownership own, List<Member> members) {
    return settled(own, members, PARTITIONS);
  }

  static boolean settled(Ownership own, List<Member> members, int partitions) {
    Map<String, Set<TopicPartition>> by = own.byMember();
    int total = by.values().stream().mapToInt(Set::size).sum();
    return total == partitions
        && members.stream().allMatch(m -> by.containsKey(m.name))
        && by.keySet().stream().allMatch(n -> members.stream().anyMatch(m -> m.name.equals(n)));
  }

  static Properties staticMember(String proto, int i) {
    Properties p = protocol(proto, null);
    p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-" + i);
    if (proto.equals("classic")) {
      // The consumer protocol's session timeout is the broker's.
      p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "30000");
    }
    return p;
  }

  static String topicWithRecords(Broker b) throws Exception {
    String topic = Brokers.topic("group");
    Brokers.createTopic(b, topic, PARTITIONS, Map.of());
    try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(Brokers.producerProps(b))) {
      for (int i = 0; i < RECORDS; i++) {
        p.send(new ProducerRecord<>(topic, i % PARTITIONS, null, ("r" + i).getBytes(StandardCharsets.UTF_8)));
      }
      p.flush();
    }
    return topic;
  }

  static Stream<Arguments> brokersAndClassicAssignors() {
    List<Arguments> out = new ArrayList<>();
    for (Broker b : Brokers.all()) {
      out.add(Arguments.of(b, "org.apache.kafka.clients.consumer.RangeAssignor"));
      out.add(Arguments.of(b, "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"));
    }
    return out.stream();
  }

  static ConsumerGroupDescription describe(Admin admin, String group) throws Exception {
    return admin.describeConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS).get(group);
  }

  static void produce(Broker b, String topic, int from, int count) throws Exception {
    try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(Brokers.producerProps(b))) {
      for (int i = from; i < from + count; i++) {
        p.send(new ProducerRecord<>(topic, i % PARTITIONS, null, ("r" + i).getBytes(StandardCharsets.UTF_8)));
      }
      p.flush();
    }
  }

  /**
   * Kafka's online migration (KIP-848): a rolling bounce moves the members of
   * a classic group to the consumer protocol one by one, then back. The group
   * turns into a consumer group when the first consumer-protocol member joins,
   * serves its classic members inside it meanwhile, and turns classic again
   * when the last consumer-protocol member leaves; partitions stay owned once
   * each and every record is consumed throughout.
   */
  @ParameterizedTest(name = "on {0}, classic members with {1}")
  @MethodSource("brokersAndClassicAssignors")
  void aGroupMigratesOnlineBetweenTheProtocolsAndBack(Broker b, String assignor) throws Exception {
    String topic = topicWithRecords(b);
    String group = Brokers.topic("g");
    Ownership own = new Ownership();
    Set<String> seen = ConcurrentHashMap.newKeySet();
    Properties classic = protocol("classic", assignor);
    Properties consumer = protocol("consumer", null);
    List<Member> members = new ArrayList<>();
    int produced = RECORDS;
    try (Admin admin = Brokers.admin(b)) {
      for (int i = 0; i < 3; i++) {
        members.add(new Member(b, group, topic, "classic-" + i, classic, own, seen));
      }
      await("three classic members sharing six partitions", () -> settled(own, members));
      await("every record consumed", () -> seen.size() == RECORDS);
      assertEquals(GroupType.CLASSIC, describe(admin, group).type());
      // Upgrade, one member at a time.
      for (int i = 0; i < 3; i++) {
        members.remove(0).close();
        members.add(new Member(b, group, topic, "consumer-" + i, consumer, own, seen));
        await("the group settled with consumer-" + i, () -> settled(own, members));
        ConsumerGroupDescription d = describe(admin, group);
        assertEquals(GroupType.CONSUMER, d.type(), "a consumer-protocol member turned the group");
        long upgraded = d.members().stream().filter(m -> m.upgraded().orElse(false)).count();
        assertEquals(i + 1, upgraded, "members on the consumer protocol: " + d.members());
        produce(b, topic, produced, 60);
        produced += 60;
        int want = produced;
        await("the new records consumed", () -> seen.size() == want);
      }
      // And back.
      for (int i = 0; i < 3; i++) {
        members.remove(0).close();
        members.add(new Member(b, group, topic, "classic-again-" + i, classic, own, seen));
        await("the group settled with classic-again-" + i, () -> settled(own, members));
        if (i < 2) {
          ConsumerGroupDescription d = describe(admin, group);
          assertEquals(GroupType.CONSUMER, d.type(), "consumer-protocol members remain");
          long upgraded = d.members().stream().filter(m -> m.upgraded().orElse(false)).count();
          assertEquals(2 - i, upgraded, "members on the consumer protocol: " + d.members());
        }
        produce(b, topic, produced, 60);
        produced += 60;
        int want = produced;
        await("the new records consumed", () -> seen.size() == want);
      }
      await("the group classic again", () -> {
        try {
          return describe(admin, group).type() == GroupType.CLASSIC;
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      });
      assertEquals(List.of(), own.violations, "no partition owned twice");
      assertNoErrors(members);
    } finally {
      closeAll(members);
    }
  }

  @ParameterizedTest(name = "on {0}, {1} protocol, {2}")
  @MethodSource("brokersAndAssignors")
  void membersShareThePartitionsAcrossJoinsAndLeaves(Broker b, String proto, String assignor) throws Exception {
    String topic = topicWithRecords(b);
    String group = Brokers.topic("g");
    Ownership own = new Ownership();
    Set<String> seen = ConcurrentHashMap.newKeySet();
    Properties extra = protocol(proto, assignor);
    List<Member> members = new ArrayList<>();
    try {
      for (int i = 0; i < 3; i++) {
        members.add(new Member(b, group, topic, "m" + i, extra, own, seen));
      }
      await("three members sharing six partitions", () -> settled(own, members));
      await("every record consumed", () -> seen.size() == RECORDS);
      // A fourth joins.
      Map<String, Set<TopicPartition>> before = own.byMember();
      members.forEach(m -> m.revokedEver.clear());
      members.add(new Member(b, group, topic, "m3", extra, own, seen));
      await("four members sharing six partitions", () -> settled(own, members));
      if (assignor.contains("Cooperative") || proto.equals("consumer")) {
        // Cooperative-sticky and KIP-848 revoke only what moves to the newcomer.
        Map<String, Set<TopicPartition>> after = own.byMember();
        for (Member m : members.subList(0, 3)) {
          Set<TopicPartition> moved = new HashSet<>(before.get(m.name));
          moved.removeAll(after.get(m.name));
          assertEquals(moved, m.revokedEver, m.name + " revoked exactly what moved");
          if (!assignor.equals("range")) {
            // Sticky assignors only: Kafka's server-side range may hand a
            // member other partitions (seen on the reference broker).
            assertTrue(after.get(m.name).stream().allMatch(before.get(m.name)::contains), m.name + " kept its own");
          }
        }
      }
      // One leaves.
      Member gone = members.remove(1);
      gone.close();
      await("three members again", () -> settled(own, members));
      assertEquals(List.of(), own.violations, "no partition owned twice");
    } finally {
      closeAll(members);
    }
    assertNoErrors(members);
    // The committed offsets cover every record.
    try (var admin = Brokers.admin(b)) {
      long committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()
          .values().stream().mapToLong(o -> o.offset()).sum();
      assertEquals(RECORDS, committed);
    }
  }

  @ParameterizedTest(name = "on {0}, {1} protocol")
  @MethodSource("brokersAndProtocols")
  void aStaticMemberRestartingWithinItsSessionGetsItsPartitionsBackWithoutARebalance(Broker b, String proto)
      throws Exception {
    String topic = topicWithRecords(b);
    String group = Brokers.topic("static");
    Ownership own = new Ownership();
    Set<String> seen = ConcurrentHashMap.newKeySet();
    List<Member> members = new ArrayList<>();
    try {
      for (int i = 0; i < 3; i++) {
        Properties extra = staticMember(proto, i);
        members.add(new Member(b, group, topic, "s" + i, extra, own, seen));
      }
      await("three static members sharing six partitions", () -> settled(own, members));
      // Every member at the same generation: a member reports the one its
      // last poll saw, which may still be an earlier one.
      await("one generation everywhere", () -> members.stream().allMatch(m -> m.generation > 0)
          && members.stream().mapToInt(m -> m.generation).distinct().count() == 1);
      Map<String, Set<TopicPartition>> before = own.byMember();
      int generation = members.get(0).generation;
      int othersRevoked = members.get(0).revocations.get() + members.get(2).revocations.get();
      int othersAssigned = members.get(0).assignments.get() + members.get(2).assignments.get();
      // s1 stops (a static member sends no LeaveGroup) and comes back.
      Member old = members.remove(1);
      old.close();
      Properties extra = staticMember(proto, 1);
      Member back = new Member(b, group, topic, "s1", extra, own, seen);
      members.add(1, back);
      await("s1 owns its partitions again", () -> settled(own, members));
      assertEquals(before.get("s1"), own.byMember().get("s1"), "the same partitions");
      await("s1's generation", () -> back.generation > 0);
      // The generation it rejoined at is the one before: nothing rebalanced,
      // so the others saw no callback either.
      assertEquals(generation, back.generation, "no new generation");
      assertEquals(othersRevoked, members.get(0).revocations.get() + members.get(2).revocations.get());
      assertEquals(othersAssigned, members.get(0).assignments.get() + members.get(2).assignments.get());
      assertEquals(List.of(), own.violations);
    } finally {
      closeAll(members);
    }
    assertNoErrors(members);
  }
}
