package dev.strata;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The brokers every suite runs against: Strata and the reference Apache Kafka
 * broker, named by the system properties {@code strata.bootstrap} and
 * {@code kafka.bootstrap} (the Rust test that runs a suite sets both).
 */
public final class Brokers {
  private Brokers() {}

  /** One broker under test. */
  public record Broker(String name, String bootstrap) {
    public boolean isStrata() {
      return name.equals("strata");
    }

    @Override
    public String toString() {
      return name;
    }
  }

  /** Both brokers; a suite's parameterized tests take their argument from here. */
  public static List<Broker> all() {
    List<Broker> out = new ArrayList<>();
    for (String name : List.of("strata", "kafka")) {
      String addr = System.getProperty(name + ".bootstrap");
      if (addr == null || addr.isBlank()) {
        throw new IllegalStateException("system property " + name + ".bootstrap is not set");
      }
      out.add(new Broker(name, addr));
    }
    return out;
  }

  /** A fresh topic name (one broker serves a whole run). */
  public static String topic(String prefix) {
    return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  public static Admin admin(Broker b) {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    return Admin.create(p);
  }

  /** Creates a topic and waits until it exists. */
  public static void createTopic(Broker b, String name, int partitions, Map<String, String> configs)
      throws Exception {
    try (Admin admin = admin(b)) {
      NewTopic t = new NewTopic(name, partitions, (short) 1).configs(configs);
      admin.createTopics(List.of(t)).all().get(30, TimeUnit.SECONDS);
    }
  }

  public static Properties producerProps(Broker b) {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    return p;
  }

  public static KafkaConsumer<byte[], byte[]> consumer(Broker b, Properties extra) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.putAll(extra);
    return new KafkaConsumer<>(p);
  }

  /**
   * Reads {@code count} records of one partition from its start by
   * assign/seek, within a deadline.
   */
  public static List<ConsumerRecord<byte[], byte[]>> readPartition(
      Broker b, String topic, int partition, int count, Properties extra) {
    List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
    try (KafkaConsumer<byte[], byte[]> c = consumer(b, extra)) {
      TopicPartition tp = new TopicPartition(topic, partition);
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (out.size() < count && System.nanoTime() < deadline) {
        for (ConsumerRecord<byte[], byte[]> r : c.poll(java.time.Duration.ofMillis(200))) {
          out.add(r);
        }
      }
    }
    return out;
  }
}
