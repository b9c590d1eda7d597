package dev.strata;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strata.Brokers.Broker;
import java.nio.file.Files;
import java.time.Duration;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.junit.jupiter.api.Test;

/**
 * Kafka's own command-line tools, run as an operator runs them, against
 * Strata and the reference broker; the facts each prints are parsed and
 * compared. Every tool runs in this JVM ({@link Tool}).
 */
class ToolsTest {
  static final String TOPICS = "org.apache.kafka.tools.TopicCommand";

  /** Runs a tool that must succeed. */
  static Tool.Result ok(String cls, String... args) {
    Tool.Result r = Tool.run(cls, args);
    assertEquals(0, r.exit(), () -> cls + " " + String.join(" ", args) + "\n" + r);
    return r;
  }

  /** The same facts from both brokers: {@code facts} gets each broker and a fresh topic. */
  static void sameOnBoth(Function<Broker, Object> facts) {
    List<Broker> all = Brokers.all();
    Object strata = facts.apply(all.get(0));
    Object kafka = facts.apply(all.get(1));
    assertEquals(kafka, strata, "Strata's facts differ from Kafka's");
  }

  static List<String> matches(String text, String regex) {
    List<String> out = new ArrayList<>();
    Matcher m = Pattern.compile(regex, Pattern.MULTILINE).matcher(text);
    while (m.find()) {
      StringBuilder sb = new StringBuilder();
      for (int g = 1; g <= m.groupCount(); g++) {
        sb.append(g > 1 ? " " : "").append(m.group(g));
      }
      out.add(sb.toString());
    }
    return out;
  }

  @Test
  void kafkaTopics() {
    sameOnBoth(b -> {
      String t = Brokers.topic("tool-topics");
      String bs = b.bootstrap();
      String created = ok(TOPICS, "--bootstrap-server", bs, "--create", "--topic", t, "--partitions", "3",
          "--config", "retention.ms=1000000").out();
      assertTrue(created.contains("Created topic " + t + "."), created);
      ok(TOPICS, "--bootstrap-server", bs, "--alter", "--topic", t, "--partitions", "5");
      String described = ok(TOPICS, "--bootstrap-server", bs, "--describe", "--topic", t).out();
      List<String> facts = new ArrayList<>();
      facts.addAll(matches(described, "PartitionCount: (\\d+)\\s+ReplicationFactor: (\\d+)\\s+Configs: (\\S*)"));
      // Every partition led by the one broker, which is its only replica and ISR.
      for (String p : matches(described, "Partition: (\\d+)\\s+Leader: (\\d+)\\s+Replicas: (\\S+)\\s+Isr: (\\S+)")) {
        String[] f = p.split(" ");
        facts.add("partition " + f[0] + " single-replica " + (f[1].equals(f[2]) && f[2].equals(f[3])));
      }
      String listed = ok(TOPICS, "--bootstrap-server", bs, "--list").out();
      facts.add("listed " + listed.lines().anyMatch(t::equals));
      ok(TOPICS, "--bootstrap-server", bs, "--delete", "--topic", t);
      long deadline = System.nanoTime() + 30_000_000_000L;
      boolean gone = false;
      while (!gone && System.nanoTime() < deadline) {
        gone = ok(TOPICS, "--bootstrap-server", bs, "--list").out().lines().noneMatch(t::equals);
      }
      facts.add("deleted " + gone);
      return facts;
    });
  }

  @Test
  void kafkaConfigsForTopicsAndBrokers() {
    sameOnBoth(b -> {
      String t = Brokers.topic("tool-configs");
      String bs = b.bootstrap();
      try {
        Brokers.createTopic(b, t, 1, Map.of());
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
      String cfg = "kafka.admin.ConfigCommand";
      String altered = ok(cfg, "--bootstrap-server", bs, "--entity-type", "topics", "--entity-name", t,
          "--alter", "--add-config", "retention.ms=5000,max.message.bytes=100000").out();
      List<String> facts = new ArrayList<>();
      facts.add(altered.replace(t, "T").strip());
      // Kafka's describe answers from the broker's metadata cache, which may
      // lag the alter by a moment: wait until it shows, then delete.
      String described;
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      do {
        described = ok(cfg, "--bootstrap-server", bs, "--entity-type", "topics", "--entity-name", t, "--describe")
            .out();
      } while (!described.contains("max.message.bytes=100000") && System.nanoTime() < deadline);
      facts.add(described.replace(t, "T").strip());
      ok(cfg, "--bootstrap-server", bs, "--entity-type", "topics", "--entity-name", t, "--alter",
          "--delete-config", "max.message.bytes");
      facts.add(ok(cfg, "--bootstrap-server", bs, "--entity-type", "topics", "--entity-name", t, "--describe")
          .out().replace(t, "T").strip());
      String node = brokerId(b);
      facts.add(ok(cfg, "--bootstrap-server", bs, "--entity-type", "brokers", "--entity-name", node, "--describe")
          .out().replace("broker " + node, "broker N").strip());
      return facts;
    });
  }

  /**
   * Broker configs each broker sets for itself (the reference broker's
   * server.properties, Strata's identity, listeners and data location), whose
   * values are its own; their names are still compared.
   */
  static final List<String> OWN_SETTINGS = List.of("advertised.listeners", "broker.id",
      "controller.listener.names", "controller.quorum.bootstrap.servers", "group.initial.rebalance.delay.ms",
      "inter.broker.listener.name", "listener.security.protocol.map", "listeners", "log.dirs", "node.id",
      "num.partitions", "offsets.topic.replication.factor", "process.roles",
      "share.coordinator.state.topic.min.isr", "share.coordinator.state.topic.replication.factor",
      "transaction.state.log.min.isr", "transaction.state.log.replication.factor");

  @Test
  void kafkaConfigsDescribeAllForABroker() {
    sameOnBoth(b -> {
      String out = ok("kafka.admin.ConfigCommand", "--bootstrap-server", b.bootstrap(), "--entity-type", "brokers",
          "--entity-name", brokerId(b), "--describe", "--all").out();
      // "  name=value sensitive=false synonyms={...}"
      Map<String, String> configs = new TreeMap<>();
      for (String line : matches(out, "^  (\\S+?)=(.*) sensitive=(\\w+) synonyms=")) {
        String[] parts = line.split(" ", 2);
        String name = parts[0];
        configs.put(name, OWN_SETTINGS.contains(name) ? "<own setting>" : parts[1]);
      }
      assertTrue(configs.size() > 300, () -> "Kafka's broker configs, got " + configs.size() + ":\n" + out);
      return configs;
    });
  }

  static final String GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";

  /** Partition, current offset, log end and lag of each row kafka-consumer-groups --describe prints. */
  static List<String> groupRows(String out, String topic) {
    List<String> rows = matches(out, "^\\S+\\s+" + Pattern.quote(topic) + "\\s+(\\d+)\\s+(\\S+)\\s+(\\S+)\\s+(\\S+)");
    rows.sort(String::compareTo);
    return rows;
  }

  /** New offsets kafka-consumer-groups --reset-offsets prints, by partition. */
  static List<String> resetRows(String out, String topic) {
    List<String> rows = matches(out, "^\\S+\\s+" + Pattern.quote(topic) + "\\s+(\\d+)\\s+(\\d+)");
    rows.sort(String::compareTo);
    return rows;
  }

  @Test
  void consoleConsumerInAGroupAndKafkaConsumerGroups() {
    sameOnBoth(b -> {
      String t = producedTopic(b, 20);
      String g = Brokers.topic("tool-group");
      String bs = b.bootstrap();
      List<String> facts = new ArrayList<>();
      Tool.Result c = Tool.run("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bs,
          "--topic", t, "--group", g, "--from-beginning", "--max-messages", "20");
      assertEquals(0, c.exit(), c::toString);
      facts.add("console consumer read " + matches(c.out(), "^(line \\d+)$").size());
      facts.add("listed " + ok(GROUPS, "--bootstrap-server", bs, "--list").out().lines().anyMatch(g::equals));
      facts.add("described " + groupRows(ok(GROUPS, "--bootstrap-server", bs, "--describe", "--group", g).out(), t));
      facts.add("state " + matches(ok(GROUPS, "--bootstrap-server", bs, "--describe", "--group", g, "--state").out(),
          "\\b(Empty|Stable|PreparingRebalance|CompletingRebalance|Dead)\\b"));
      for (String[] how : List.of(new String[] {"--to-earliest"}, new String[] {"--shift-by", "5"},
          new String[] {"--to-datetime", "2020-01-01T00:00:00.000"}, new String[] {"--to-latest"})) {
        List<String> args = new ArrayList<>(List.of("--bootstrap-server", bs, "--reset-offsets", "--group", g,
            "--topic", t, "--execute"));
        args.addAll(List.of(how));
        facts.add(String.join(" ", how) + " " + resetRows(ok(GROUPS, args.toArray(String[]::new)).out(), t));
      }
      facts.add("after resets " + groupRows(ok(GROUPS, "--bootstrap-server", bs, "--describe", "--group", g).out(), t));
      facts.add(ok(GROUPS, "--bootstrap-server", bs, "--delete", "--group", g).out().replace(g, "G").strip());
      facts.add("listed after delete "
          + ok(GROUPS, "--bootstrap-server", bs, "--list").out().lines().anyMatch(g::equals));
      return facts;
    });
  }

  /** The rows {@code kafka-consumer-groups} prints for group {@code g}, without the member ids (column 1). */
  static List<String> memberRows(String out, String g, String t) {
    List<String> rows = new ArrayList<>();
    for (String row : matches(out, "^" + Pattern.quote(g) + "\\s+(.*)$")) {
      List<String> cols = new ArrayList<>(List.of(row.strip().split("\\s+")));
      cols.remove(0);
      rows.add(String.join(" ", cols).replace(t, "T"));
    }
    rows.sort(String::compareTo);
    return rows;
  }

  @Test
  void kafkaConsumerGroupsDescribesLiveMembersOfBothProtocols() {
    sameOnBoth(b -> {
      List<String> facts = new ArrayList<>();
      for (String protocol : List.of("classic", "consumer")) {
        String t = producedTopic(b, 10);
        String g = Brokers.topic("tool-members");
        Properties props = new Properties();
        props.put(ConsumerConfig.GROUP_ID_CONFIG, g);
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "tool-member");
        try (KafkaConsumer<byte[], byte[]> c = Brokers.consumer(b, props)) {
          c.subscribe(List.of(t));
          long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
          int read = 0;
          while (read < 10 || c.assignment().size() < 2) {
            assertTrue(System.nanoTime() < deadline, "the member got both partitions and read all");
            read += c.poll(Duration.ofMillis(100)).count();
          }
          c.commitSync();
          String bs = b.bootstrap();
          for (List<String> how : List.of(List.of("--members"), List.of("--members", "--verbose"))) {
            List<String> args = new ArrayList<>(List.of("--bootstrap-server", bs, "--describe", "--group", g));
            args.addAll(how);
            String out = ok(GROUPS, args.toArray(String[]::new)).out();
            List<String> rows = memberRows(out, g, t);
            assertEquals(1, rows.size(), out);
            facts.add(protocol + " " + how + " " + rows);
          }
          String state = ok(GROUPS, "--bootstrap-server", bs, "--describe", "--group", g, "--state").out();
          List<String> states = matches(state,
              "(\\S+)\\s+(Empty|Stable|Assigning|Reconciling|PreparingRebalance|CompletingRebalance)\\s+(\\d+)\\s*$");
          assertEquals(1, states.size(), state);
          facts.add(protocol + " state " + states);
          facts.add(protocol + " offsets " + groupRows(
              ok(GROUPS, "--bootstrap-server", bs, "--describe", "--group", g).out(), t));
        }
      }
      return facts;
    });
  }

  @Test
  void verifiableConsumerReadsEveryAckedMessage() {
    sameOnBoth(b -> {
      String t = Brokers.topic("tool-verifiable");
      try {
        Brokers.createTopic(b, t, 3, Map.of());
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
      Tool.Result vp = Tool.runInOwnJvm("org.apache.kafka.tools.VerifiableProducer", "--bootstrap-server",
          b.bootstrap(), "--topic", t, "--max-messages", "300", "--acks", "-1");
      assertEquals(0, vp.exit(), vp::toString);
      long acked = matches(vp.out(), "\"name\":\"producer_send_success\"").size();
      Tool.Result vc = Tool.runInOwnJvm("org.apache.kafka.tools.VerifiableConsumer", "--bootstrap-server",
          b.bootstrap(), "--topic", t, "--group-id", Brokers.topic("tool-vgroup"), "--max-messages", "300",
          "--reset-policy", "earliest");
      assertEquals(0, vc.exit(), vc::toString);
      long consumed = 0;
      for (String n : matches(vc.out(), "\"name\":\"records_consumed\",\"count\":(\\d+)")) {
        consumed += Long.parseLong(n);
      }
      boolean committed = vc.out().contains("\"name\":\"offsets_committed\"") && !vc.out().contains("\"success\":false");
      return List.of("acked " + acked, "consumed " + consumed, "committed " + committed);
    });
  }

  static String brokerId(Broker b) {
    try (var admin = Brokers.admin(b)) {
      return Integer.toString(admin.describeCluster().nodes().get().iterator().next().id());
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  /** A topic of two partitions with {@code n} records in partition 0 (none in 1), by the console producer. */
  static String producedTopic(Broker b, int n) {
    String t = Brokers.topic("tool-data");
    try {
      Brokers.createTopic(b, t, 2, Map.of());
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
    StringBuilder in = new StringBuilder();
    for (int i = 0; i < n; i++) {
      in.append("line ").append(i).append('\n');
    }
    // --sync sends one record at a time; --timeout 0 (its linger) keeps each
    // from waiting a second for a batch that will not fill.
    Tool.Result r = Tool.runWithInput(in.toString(), "org.apache.kafka.tools.ConsoleProducer",
        "--bootstrap-server", b.bootstrap(), "--topic", t,
        "--producer-property", "partitioner.class=dev.strata.ToolsTest$ZeroPartitioner", "--sync", "--timeout", "0");
    assertEquals(0, r.exit(), r::toString);
    return t;
  }

  @Test
  void consoleProducerAndConsumerWithPartition() {
    sameOnBoth(b -> {
      String t = Brokers.topic("tool-console");
      try {
        Brokers.createTopic(b, t, 1, Map.of());
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
      Tool.Result p = Tool.runWithInput("a\nb\nc\n", "org.apache.kafka.tools.ConsoleProducer",
          "--bootstrap-server", b.bootstrap(), "--topic", t);
      assertEquals(0, p.exit(), p::toString);
      Tool.Result c = Tool.run("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server",
          b.bootstrap(), "--topic", t, "--partition", "0", "--offset", "earliest", "--max-messages", "3",
          "--property", "print.offset=true", "--property", "print.partition=true");
      assertEquals(0, c.exit(), c::toString);
      return c.out().strip();
    });
  }

  @Test
  void getOffsetsAndDeleteRecords() {
    sameOnBoth(b -> {
      String t = Brokers.topic("tool-offsets");
      try {
        Brokers.createTopic(b, t, 2, Map.of());
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
      Tool.Result p = Tool.runWithInput("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "org.apache.kafka.tools.ConsoleProducer",
          "--bootstrap-server", b.bootstrap(), "--topic", t, "--property", "parse.key=false",
          "--producer-property", "partitioner.class=dev.strata.ToolsTest$ZeroPartitioner");
      assertEquals(0, p.exit(), p::toString);
      String shell = "org.apache.kafka.tools.GetOffsetShell";
      List<String> facts = new ArrayList<>();
      facts.add(ok(shell, "--bootstrap-server", b.bootstrap(), "--topic", t).out().replace(t, "T").strip());
      facts.add(ok(shell, "--bootstrap-server", b.bootstrap(), "--topic", t, "--time", "-2").out().replace(t, "T").strip());
      try {
        Path json = Files.createTempFile("delete-records", ".json");
        Files.writeString(json, "{\"partitions\":[{\"topic\":\"" + t + "\",\"partition\":0,\"offset\":4}],\"version\":1}");
        facts.add(ok("org.apache.kafka.tools.DeleteRecordsCommand", "--bootstrap-server", b.bootstrap(),
            "--offset-json-file", json.toString()).out().replace(t, "T").strip());
      } catch (java.io.IOException e) {
        throw new IllegalStateException(e);
      }
      facts.add(ok(shell, "--bootstrap-server", b.bootstrap(), "--topic", t, "--time", "-2").out().replace(t, "T").strip());
      return facts;
    });
  }

  /** Sends every record to partition 0. */
  public static class ZeroPartitioner implements org.apache.kafka.clients.producer.Partitioner {
    @Override
    public int partition(String topic, Object key, byte[] keyBytes, Object value, byte[] valueBytes,
        org.apache.kafka.common.Cluster cluster) {
      return 0;
    }

    @Override
    public void close() {}

    @Override
    public void configure(Map<String, ?> configs) {}
  }

  /** API name to version range, from kafka-broker-api-versions. */
  static Map<String, String> apiVersions(Broker b) {
    String out = ok("org.apache.kafka.tools.BrokerApiVersionsCommand", "--bootstrap-server", b.bootstrap()).out();
    Map<String, String> ranges = new TreeMap<>();
    for (String m : matches(out, "^\\s*(\\w+)\\((\\d+)\\): (\\d+ to \\d+|UNSUPPORTED)")) {
      String[] f = m.split(" ", 3);
      ranges.put(f[0] + "(" + f[1] + ")", f[2]);
    }
    assertTrue(ranges.size() > 10, out);
    return ranges;
  }

  @Test
  void brokerApiVersionsOfEveryServedApiMatchKafka() {
    List<Broker> all = Brokers.all();
    Map<String, String> strata = apiVersions(all.get(0));
    Map<String, String> kafka = apiVersions(all.get(1));
    List<String> differ = new ArrayList<>();
    for (Map.Entry<String, String> e : strata.entrySet()) {
      String want = kafka.get(e.getKey());
      if (!e.getValue().equals("UNSUPPORTED") && !e.getValue().equals(want)) {
        differ.add(e.getKey() + ": strata " + e.getValue() + ", kafka " + kafka.get(e.getKey()));
      }
    }
    assertEquals(List.of(), differ, "APIs Strata serves have Kafka's version ranges");
  }

  static final String TRANSACTIONS = "org.apache.kafka.tools.TransactionsCommand";

  /** The whitespace-separated columns of the output line that names {@code id}, the id itself as ID. */
  static List<String> row(String out, String id) {
    for (String line : out.split("\n")) {
      List<String> cols = new ArrayList<>(List.of(line.trim().split("\\s+")));
      if (cols.contains(id)) {
        cols.replaceAll(c -> c.equals(id) ? "ID" : c);
        return cols;
      }
    }
    return List.of();
  }

  /**
   * kafka-transactions: list, describe and describe-producers of an open
   * transaction, then abort of it by its start offset (as for a hanging
   * transaction), after which the partition has no open transaction.
   */
  @Test
  void kafkaTransactionsListsDescribesAndAborts() {
    sameOnBoth(b -> {
      String t = Brokers.topic("tool-txn");
      String id = t + "-tx";
      List<String> facts = new ArrayList<>();
      try {
        Brokers.createTopic(b, t, 1, Map.of());
        Properties props = Brokers.producerProps(b);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
        props.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "600000");
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(props)) {
          p.initTransactions();
          p.beginTransaction();
          for (int i = 0; i < 3; i++) {
            p.send(new ProducerRecord<>(t, 0, null, ("v" + i).getBytes()));
          }
          p.flush();
          String bs = b.bootstrap();
          List<String> listed = row(ok(TRANSACTIONS, "--bootstrap-server", bs, "list").out(), id);
          // TransactionalId Coordinator ProducerId TransactionState
          facts.add("list: " + listed.get(0) + " " + listed.get(3));
          String described = ok(TRANSACTIONS, "--bootstrap-server", bs, "describe", "--transactional-id", id).out();
          // CoordinatorId TransactionalId ProducerId ProducerEpoch TransactionState TransactionTimeoutMs
          // CurrentTransactionStartTimeMs TransactionDurationMs TopicPartitions
          List<String> d = row(described, id);
          facts.add("describe: " + d.get(4) + " timeout " + d.get(5) + " partitions " + d.get(8).replace(t, "T"));
          String producers = ok(TRANSACTIONS, "--bootstrap-server", bs, "describe-producers", "--topic", t,
              "--partition", "0").out();
          // ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp CurrentTransactionStartOffset
          List<String> prod = row(producers, d.get(2));
          facts.add("describe-producers: epoch " + prod.get(1).equals(d.get(3)) + " last sequence " + prod.get(3)
              + " start offset " + prod.get(5));
          Tool.Result abort = Tool.run(TRANSACTIONS, "--bootstrap-server", bs, "abort", "--topic", t,
              "--partition", "0", "--start-offset", "0");
          facts.add("abort exit " + abort.exit());
          String after = ok(TRANSACTIONS, "--bootstrap-server", bs, "describe-producers", "--topic", t,
              "--partition", "0").out();
          facts.add("after abort: start offset " + row(after, d.get(2)).get(5));
          p.abortTransaction();
        }
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
      return facts;
    });
  }

  /**
   * kafka-reassign-partitions on a one-broker cluster: --execute with a
   * throttle (set on the broker and the topic), then --verify (completed, the
   * throttles cleared), and a plan naming a broker that does not exist.
   */
  @Test
  void kafkaReassignPartitionsExecutesAndVerifies() {
    sameOnBoth(b -> {
      String t = Brokers.topic("tool-move");
      List<String> facts = new ArrayList<>();
      try {
        Brokers.createTopic(b, t, 2, Map.of());
        String id = brokerId(b);
        Path plan = Files.createTempFile("reassign", ".json");
        Files.writeString(plan, "{\"version\":1,\"partitions\":[{\"topic\":\"" + t + "\",\"partition\":0,\"replicas\":["
            + id + "]},{\"topic\":\"" + t + "\",\"partition\":1,\"replicas\":[" + id + "]}]}");
        String tool = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
        String execute = ok(tool, "--bootstrap-server", b.bootstrap(), "--reassignment-json-file", plan.toString(),
            "--execute", "--throttle", "1000000").out();
        facts.addAll(matches(execute.replace(t, "T"), "^(Successfully started partition reassignments? for .*)$"));
        facts.addAll(matches(execute, "^(The inter-broker throttle limit was set to \\d+ B/s)$"));
        String verify = ok(tool, "--bootstrap-server", b.bootstrap(), "--reassignment-json-file", plan.toString(),
            "--verify").out().replace(t, "T").replace("broker " + id, "broker B");
        facts.addAll(matches(verify, "^(Reassignment of partition .* is completed\\.)$"));
        facts.addAll(matches(verify, "^(Clearing .* throttles on .*)$"));
        Path bad = Files.createTempFile("reassign-bad", ".json");
        Files.writeString(bad, "{\"version\":1,\"partitions\":[{\"topic\":\"" + t + "\",\"partition\":0,\"replicas\":[4242]}]}");
        Tool.Result refused = Tool.run(tool, "--bootstrap-server", b.bootstrap(), "--reassignment-json-file",
            bad.toString(), "--execute");
        facts.add("unknown broker exit " + refused.exit());
        facts.addAll(matches(refused.out() + refused.err(), "(Unknown broker id.*|no such broker.*)"));
        // Started, throttled, two partitions completed, two throttles cleared, the refusal.
        assertTrue(facts.size() >= 7, facts.toString());
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
      return facts;
    });
  }

  @Test
  void logDirsAndFeatures() {
    sameOnBoth(b -> {
      String t = producedTopic(b, 20);
      String out = ok("org.apache.kafka.tools.LogDirsCommand", "--bootstrap-server", b.bootstrap(), "--describe",
          "--topic-list", t).out();
      List<String> facts = new ArrayList<>();
      for (String p : matches(out, "\"partition\":\"([^\"]+)\",\"size\":(\\d+)")) {
        String[] f = p.split(" ");
        facts.add(f[0].replace(t, "T") + " has data " + (Long.parseLong(f[1]) > 0));
      }
      facts.sort(String::compareTo);
      String features = ok("org.apache.kafka.tools.FeatureCommand", "--bootstrap-server", b.bootstrap(), "describe").out();
      facts.addAll(matches(features, "^(Feature: (?:metadata|group)\\.version.*?)\\s+Epoch"));
      return facts;
    });
  }

  @Test
  void verifiableProducerPerfTestAndEndToEndLatency() {
    sameOnBoth(b -> {
      String t = Brokers.topic("tool-load");
      try {
        Brokers.createTopic(b, t, 1, Map.of());
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
      List<String> facts = new ArrayList<>();
      Tool.Result vp = Tool.runInOwnJvm("org.apache.kafka.tools.VerifiableProducer", "--bootstrap-server",
          b.bootstrap(), "--topic", t, "--max-messages", "200");
      assertEquals(0, vp.exit(), vp::toString);
      String v = vp.out();
      facts.add("verifiable acked " + matches(v, "\"acked\":(\\d+)"));
      facts.add("verifiable successes " + v.lines().filter(l -> l.contains("\"producer_send_success\"")).count());
      String perf = ok("org.apache.kafka.tools.ProducerPerformance", "--topic", t, "--num-records", "20000",
          "--record-size", "100", "--throughput", "-1", "--producer-props", "bootstrap.servers=" + b.bootstrap(),
          "acks=all").out();
      List<String> sent = matches(perf, "^(\\d+) records sent");
      facts.add("perf " + sent.get(sent.size() - 1));
      // kafka-e2e-latency measures by assign, then commits its consumer's offsets.
      Tool.Result e2e = Tool.run("org.apache.kafka.tools.EndToEndLatency", b.bootstrap(), t, "200", "all", "100");
      facts.add("e2e measured " + !matches(e2e.out(), "Avg latency: ([\\d.]+) ms").isEmpty());
      facts.add("e2e exit " + e2e.exit());
      return facts;
    });
  }
}
