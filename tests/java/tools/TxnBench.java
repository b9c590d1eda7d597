import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Transactional against idempotent produce with the Java client, for any
 * Kafka-compatible broker (scripts/bench-txn.sh runs it against Strata and the
 * reference broker):
 *
 * <ul>
 *   <li>{@code txn BOOTSTRAP MESSAGES PER_TXN SIZE}: one transactional producer sends MESSAGES
 *       records of SIZE bytes to a fresh 8-partition topic, PER_TXN per transaction, each
 *       committed before the next begins;
 *   <li>{@code idempotent BOOTSTRAP MESSAGES SIZE}: the same records from an idempotent producer
 *       (acks=all), flushed at the end.
 * </ul>
 *
 * <p>Output: one line {@code msgs_per_s=... mb_per_s=... [txn_per_s=... commit_ms_avg=...]}.
 */
public class TxnBench {
  static final int PARTITIONS = 8;

  public static void main(String[] args) throws Exception {
    String mode = args[0];
    String bootstrap = args[1];
    int messages = Integer.parseInt(args[2]);
    int perTxn = mode.equals("txn") ? Integer.parseInt(args[3]) : messages;
    int size = Integer.parseInt(args[mode.equals("txn") ? 4 : 3]);
    String topic = "bench-txn-" + UUID.randomUUID().toString().substring(0, 8);
    Properties ap = new Properties();
    ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    try (Admin admin = Admin.create(ap)) {
      admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(60, TimeUnit.SECONDS);
    }
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    p.put(ProducerConfig.BATCH_SIZE_CONFIG, "131072");
    if (mode.equals("txn")) {
      p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, topic + "-tx");
    }
    byte[] value = new byte[size];
    AtomicReference<Exception> failed = new AtomicReference<>();
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
      if (mode.equals("txn")) {
        producer.initTransactions();
      }
      // A warm-up transaction (or batch) outside the measurement.
      if (mode.equals("txn")) {
        producer.beginTransaction();
        producer.send(new ProducerRecord<>(topic, value));
        producer.commitTransaction();
      } else {
        producer.send(new ProducerRecord<>(topic, value)).get();
      }
      long commitNanos = 0;
      int txns = 0;
      long start = System.nanoTime();
      for (int sent = 0; sent < messages; ) {
        if (mode.equals("txn")) {
          producer.beginTransaction();
        }
        int n = Math.min(perTxn, messages - sent);
        for (int i = 0; i < n; i++) {
          producer.send(new ProducerRecord<>(topic, value), (md, e) -> {
            if (e != null) {
              failed.compareAndSet(null, e);
            }
          });
        }
        sent += n;
        if (mode.equals("txn")) {
          long c = System.nanoTime();
          producer.commitTransaction();
          commitNanos += System.nanoTime() - c;
          txns++;
        }
      }
      producer.flush();
      double secs = (System.nanoTime() - start) / 1e9;
      if (failed.get() != null) {
        throw failed.get();
      }
      StringBuilder out = new StringBuilder();
      out.append(String.format("msgs_per_s=%.1f mb_per_s=%.2f", messages / secs, messages * (double) size / secs / 1e6));
      if (txns > 0) {
        out.append(String.format(" txn_per_s=%.1f commit_ms_avg=%.2f", txns / secs, commitNanos / 1e6 / txns));
      }
      System.out.println(out);
    }
  }
}
