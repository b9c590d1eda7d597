import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client (Kafka 4.1) through a cluster of brokers
 * (crates/strata/tests/cluster.rs runs it against three Strata brokers):
 *
 * <ol>
 *   <li>the cluster lists BROKERS nodes, and a new topic's partitions have leaders on more than
 *       one of them;
 *   <li>an idempotent producer's records are all acknowledged;
 *   <li>a group of two consumers on the consumer protocol (KIP-848) reads every one of them and
 *       commits up to the end of every partition;
 *   <li>a transactional producer commits two transactions and aborts one between them: a
 *       read_committed consumer sees exactly the committed records.
 * </ol>
 *
 * <p>Usage: {@code java ClusterClient.java BOOTSTRAP BROKERS}. Prints {@code OK ...} and exits 0,
 * or prints {@code FAIL ...} and exits 1.
 */
public class ClusterClient {
  static final int PARTITIONS = 6;
  static final int RECORDS = 600;
  static final Duration STEP = Duration.ofSeconds(60);

  static void check(boolean ok, String what) {
    if (!ok) {
      System.out.println("FAIL " + what);
      System.exit(1);
    }
  }

  public static void main(String[] args) {
    try {
      run(args);
    } catch (Throwable e) {
      // The single-file launcher loses an exception's trace: print it here.
      System.out.println("FAIL " + e);
      e.printStackTrace(System.out);
      System.exit(1);
    }
  }

  static void run(String[] args) throws Exception {
    String bootstrap = args[0];
    int brokers = Integer.parseInt(args[1]);
    String suffix = UUID.randomUUID().toString().substring(0, 8);
    String topic = "java-cluster-" + suffix;
    String txnTopic = "java-cluster-txn-" + suffix;

    // 1. The cluster and the leaders.
    Properties ap = new Properties();
    ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    try (Admin admin = Admin.create(ap)) {
      Collection<Node> nodes = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS);
      check(nodes.size() == brokers, "describeCluster lists " + nodes + ", not " + brokers + " brokers");
      admin
          .createTopics(
              List.of(
                  new NewTopic(topic, PARTITIONS, (short) 1), new NewTopic(txnTopic, PARTITIONS, (short) 1)))
          .all()
          .get(30, TimeUnit.SECONDS);
      Set<Integer> leaders = new HashSet<>();
      long deadline = System.nanoTime() + STEP.toNanos();
      while (true) {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        leaders.clear();
        int led = 0;
        for (TopicPartitionInfo p : d.partitions()) {
          if (p.leader() != null && p.leader().id() >= 0) {
            leaders.add(p.leader().id());
            led++;
          }
        }
        if (led == PARTITIONS) {
          break;
        }
        check(System.nanoTime() < deadline, "partitions of " + topic + " got no leaders");
        Thread.sleep(100);
      }
      check(leaders.size() > 1, "every partition is led by one broker: " + leaders);
      System.out.println("leaders on brokers " + leaders);
    }

    // 2. An idempotent producer.
    Properties pp = new Properties();
    pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.ACKS_CONFIG, "all");
    pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    Set<String> sent = new HashSet<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
      List<Future<RecordMetadata>> acks = new ArrayList<>();
      for (int i = 0; i < RECORDS; i++) {
        String value = "v" + i;
        acks.add(producer.send(new ProducerRecord<>(topic, i % PARTITIONS, "k" + i, value)));
        sent.add(value);
      }
      for (Future<RecordMetadata> f : acks) {
        f.get(STEP.toSeconds(), TimeUnit.SECONDS);
      }
    }
    System.out.println("produced " + sent.size());

    // 3. A group of two consumers (KIP-848).
    String group = "java-cluster-group-" + suffix;
    Map<String, Integer> seen = new ConcurrentHashMap<>();
    AtomicBoolean stop = new AtomicBoolean();
    List<Thread> members = new ArrayList<>();
    List<Throwable> errors = new ArrayList<>();
    for (int m = 0; m < 2; m++) {
      Thread t =
          new Thread(
              () -> {
                try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group))) {
                  c.subscribe(List.of(topic));
                  while (!stop.get()) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                      seen.merge(r.value(), 1, Integer::sum);
                    }
                    c.commitSync();
                  }
                } catch (Throwable e) {
                  synchronized (errors) {
                    errors.add(e);
                  }
                }
              });
      t.start();
      members.add(t);
    }
    long deadline = System.nanoTime() + STEP.toNanos();
    while (!seen.keySet().containsAll(sent) && System.nanoTime() < deadline && errors.isEmpty()) {
      Thread.sleep(100);
    }
    // Let the last commits land, then check them.
    Map<TopicPartition, Long> committed = new HashMap<>();
    try (Admin admin = Admin.create(ap)) {
      while (System.nanoTime() < deadline) {
        committed.clear();
        Map<TopicPartition, OffsetAndMetadata> offsets =
            admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        offsets.forEach((tp, o) -> committed.put(tp, o == null ? -1L : o.offset()));
        if (committed.size() == PARTITIONS
            && committed.values().stream().mapToLong(Long::longValue).sum() == RECORDS) {
          break;
        }
        Thread.sleep(100);
      }
    }
    stop.set(true);
    for (Thread t : members) {
      t.join();
    }
    check(errors.isEmpty(), "a group member failed: " + errors);
    check(seen.keySet().containsAll(sent), "the group read " + seen.size() + " of " + RECORDS + " records");
    check(
        committed.values().stream().mapToLong(Long::longValue).sum() == RECORDS,
        "committed offsets " + committed + " do not reach the end");
    System.out.println("group read " + seen.size() + " and committed " + committed);

    // 4. Transactions.
    Properties tp = new Properties();
    tp.putAll(pp);
    tp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "java-cluster-tx-" + suffix);
    Set<String> wanted = new HashSet<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(tp)) {
      producer.initTransactions();
      for (String outcome : List.of("commit-1", "abort", "commit-2")) {
        producer.beginTransaction();
        for (int i = 0; i < 60; i++) {
          String value = outcome + "-" + i;
          producer.send(new ProducerRecord<>(txnTopic, i % PARTITIONS, "k" + i, value));
          if (!outcome.equals("abort")) {
            wanted.add(value);
          }
        }
        if (outcome.equals("abort")) {
          producer.abortTransaction();
        } else {
          producer.commitTransaction();
        }
      }
    }
    Properties rc = consumerProps(bootstrap, null);
    rc.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    Set<String> got = new HashSet<>();
    List<String> wrong = new ArrayList<>();
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(rc)) {
      List<TopicPartition> parts = new ArrayList<>();
      for (int p = 0; p < PARTITIONS; p++) {
        parts.add(new TopicPartition(txnTopic, p));
      }
      c.assign(parts);
      c.seekToBeginning(parts);
      deadline = System.nanoTime() + STEP.toNanos();
      while (!got.containsAll(wanted) && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          if (!wanted.contains(r.value()) || !got.add(r.value())) {
            wrong.add(r.value());
          }
        }
      }
      // Nothing more after the committed ones (the aborted ones least of all).
      for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
        wrong.add(r.value());
      }
    }
    check(got.equals(wanted), "read_committed saw " + got.size() + " of " + wanted.size());
    check(wrong.isEmpty(), "read_committed saw aborted or repeated records: " + wrong);
    System.out.println("OK java cluster client: " + brokers + " brokers, " + RECORDS + " records, "
        + wanted.size() + " committed in transactions");
  }

  static Properties consumerProps(String bootstrap, String group) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    if (group != null) {
      p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
      p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
    }
    return p;
  }
}
