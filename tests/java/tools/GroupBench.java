import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Group benchmarks with the Java client, for any Kafka-compatible broker
 * (scripts/bench-groups.sh runs it against Strata and the reference broker):
 *
 * <ul>
 *   <li>{@code rebalance BOOTSTRAP PROTOCOL MEMBERS}: MEMBERS consumers join one group over a
 *       topic of MEMBERS partitions; prints the seconds until every member owns exactly one
 *       partition ("formed"), then the seconds until the group is settled again after one more
 *       member joins and one leaves ("rebalance").
 *   <li>{@code commit BOOTSTRAP SECONDS}: one member commits synchronously in a loop; prints
 *       commits per second.
 * </ul>
 *
 * <p>Output: one line {@code key=value ...}.
 */
public class GroupBench {
  static Properties consumerProps(String bootstrap, String group, String protocol) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    if (protocol.equals("classic")) {
      p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
          "org.apache.kafka.clients.consumer.CooperativeStickyAssignor");
    }
    return p;
  }

  static String topic(String bootstrap, int partitions) throws Exception {
    String name = "bench-group-" + UUID.randomUUID();
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    try (Admin admin = Admin.create(p)) {
      admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1))).all().get(60, TimeUnit.SECONDS);
    }
    return name;
  }

  /** A member polling on its own thread; {@code owned} is its assignment's size. */
  static final class Member implements AutoCloseable {
    final AtomicBoolean running = new AtomicBoolean(true);
    volatile int owned;
    final Thread thread;

    Member(Properties props, String topic) {
      thread = new Thread(() -> {
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(props)) {
          c.subscribe(List.of(topic));
          while (running.get()) {
            c.poll(Duration.ofMillis(20));
            owned = c.assignment().size();
          }
        }
      });
      thread.start();
    }

    @Override
    public void close() throws InterruptedException {
      running.set(false);
      thread.join(60_000);
    }
  }

  static double waitSettled(List<Member> members, long started) throws InterruptedException {
    long deadline = started + TimeUnit.SECONDS.toNanos(300);
    while (!members.stream().allMatch(m -> m.owned == 1)) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("the group did not settle in 300 s");
      }
      Thread.sleep(5);
    }
    return (System.nanoTime() - started) / 1e9;
  }

  public static void main(String[] args) throws Exception {
    String mode = args[0];
    String bootstrap = args[1];
    if (mode.equals("rebalance")) {
      String protocol = args[2];
      int n = Integer.parseInt(args[3]);
      String topic = topic(bootstrap, n);
      String group = "bench-" + UUID.randomUUID();
      List<Member> members = new ArrayList<>();
      long started = System.nanoTime();
      for (int i = 0; i < n; i++) {
        members.add(new Member(consumerProps(bootstrap, group, protocol), topic));
      }
      double formed = waitSettled(members, started);
      // One joins, one leaves: the group settles back to one partition each.
      long again = System.nanoTime();
      Member joined = new Member(consumerProps(bootstrap, group, protocol), topic);
      Member left = members.remove(0);
      left.close();
      members.add(joined);
      double rebalance = waitSettled(members, again);
      for (Member m : members) {
        m.close();
      }
      System.out.printf("mode=rebalance protocol=%s members=%d formed_s=%.3f rebalance_s=%.3f%n", protocol, n,
          formed, rebalance);
    } else if (mode.equals("commit")) {
      int seconds = Integer.parseInt(args[2]);
      String topic = topic(bootstrap, 1);
      Properties p = consumerProps(bootstrap, "bench-" + UUID.randomUUID(), "classic");
      try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
        TopicPartition tp = new TopicPartition(topic, 0);
        c.assign(List.of(tp));
        c.commitSync(Map.of(tp, new OffsetAndMetadata(0)));
        long started = System.nanoTime();
        long end = started + TimeUnit.SECONDS.toNanos(seconds);
        long commits = 0;
        while (System.nanoTime() < end) {
          c.commitSync(Collections.singletonMap(tp, new OffsetAndMetadata(commits)));
          commits++;
        }
        double elapsed = (System.nanoTime() - started) / 1e9;
        System.out.printf("mode=commit commits=%d seconds=%.3f commits_per_s=%.1f%n", commits, elapsed,
            commits / elapsed);
      }
    } else {
      throw new IllegalArgumentException("mode: rebalance | commit");
    }
  }
}
