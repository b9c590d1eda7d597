package dev.strata;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strata.Brokers.Broker;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Kafka Connect in distributed mode (one worker in a JVM of its own) with the
 * FileStream source and sink, on both brokers: the worker's config, offset and
 * status topics are created compacted, its group is of protocol type
 * {@code connect}, and a file goes through source → topic → sink unchanged,
 * across a restart of the worker.
 */
class ConnectTest {
  static List<Broker> brokers() {
    return Brokers.all();
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  static void await(String what, BooleanSupplier cond) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
    while (!cond.getAsBoolean()) {
      assertTrue(System.nanoTime() < deadline, "timed out waiting for " + what);
      Thread.sleep(200);
    }
  }

  /** One Connect worker process. */
  static final class Worker implements AutoCloseable {
    final Process process;
    final Path log;

    Worker(Path props, Path log) throws IOException {
      String cp = Tool.classpath();
      Path java = Path.of(System.getProperty("java.home"), "bin", "java");
      this.log = log;
      process = new ProcessBuilder(java.toString(), "-Xmx512m", "-cp", cp,
          "org.apache.kafka.connect.cli.ConnectDistributed", props.toString())
          .redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    /** Stops the worker as an operator does (SIGTERM: offsets are flushed). */
    @Override
    public void close() throws InterruptedException {
      process.destroy();
      if (!process.waitFor(60, TimeUnit.SECONDS)) {
        process.destroyForcibly();
        process.waitFor(30, TimeUnit.SECONDS);
      }
    }
  }

  static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  static HttpResponse<String> http(String method, String url, String body) {
    try {
      HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30))
          .header("Content-Type", "application/json");
      b = body == null ? b.method(method, HttpRequest.BodyPublishers.noBody())
          : b.method(method, HttpRequest.BodyPublishers.ofString(body));
      return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      return null;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return null;
    }
  }

  static boolean running(String rest, String connector) {
    HttpResponse<String> r = http("GET", rest + "/connectors/" + connector + "/status", null);
    return r != null && r.statusCode() == 200 && !r.body().contains("\"state\":\"FAILED\"")
        && r.body().replaceAll("\\s", "").matches(".*\"tasks\":\\[\\{.*\"state\":\"RUNNING\".*");
  }

  static List<String> lines(Path p) {
    try {
      return Files.exists(p) ? Files.readAllLines(p, StandardCharsets.UTF_8) : List.of();
    } catch (IOException e) {
      return List.of();
    }
  }

  @ParameterizedTest(name = "on {0}")
  @MethodSource("brokers")
  void aFileGoesThroughSourceTopicAndSinkAcrossAWorkerRestart(Broker b) throws Exception {
    Path dir = Files.createTempDirectory("strata-connect");
    String tag = Brokers.topic("connect");
    Path in = dir.resolve("in.txt");
    Path out = dir.resolve("out.txt");
    List<String> expected = new ArrayList<>();
    for (int i = 0; i < 200; i++) {
      expected.add("line " + i + " " + tag);
    }
    Files.write(in, expected.subList(0, 100), StandardCharsets.UTF_8);
    int port = freePort();
    String rest = "http://127.0.0.1:" + port;
    String configTopic = tag + "-configs";
    String offsetTopic = tag + "-offsets";
    String statusTopic = tag + "-status";
    String group = tag + "-workers";
    Path props = dir.resolve("worker.properties");
    Files.writeString(props, String.join("\n",
        "bootstrap.servers=" + b.bootstrap(),
        "group.id=" + group,
        "listeners=http://127.0.0.1:" + port,
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=org.apache.kafka.connect.storage.StringConverter",
        "config.storage.topic=" + configTopic,
        "offset.storage.topic=" + offsetTopic,
        "status.storage.topic=" + statusTopic,
        "config.storage.replication.factor=1",
        "offset.storage.replication.factor=1",
        "status.storage.replication.factor=1",
        "offset.storage.partitions=3",
        "status.storage.partitions=1",
        "offset.flush.interval.ms=500",
        "scheduled.rebalance.max.delay.ms=0",
        "") + "\n");
    String topic = tag + "-lines";
    String source = "{\"name\":\"src\",\"config\":{\"connector.class\":\"org.apache.kafka.connect.file.FileStreamSourceConnector\","
        + "\"tasks.max\":\"1\",\"file\":\"" + in + "\",\"topic\":\"" + topic + "\"}}";
    String sink = "{\"name\":\"sink\",\"config\":{\"connector.class\":\"org.apache.kafka.connect.file.FileStreamSinkConnector\","
        + "\"tasks.max\":\"1\",\"file\":\"" + out + "\",\"topics\":\"" + topic + "\"}}";
    Map<String, Object> facts = new TreeMap<>();
    try (Worker w = new Worker(props, dir.resolve("worker-1.log"))) {
      await("the worker's REST API", () -> {
        HttpResponse<String> r = http("GET", rest + "/connectors", null);
        return r != null && r.statusCode() == 200;
      });
      HttpResponse<String> r = http("POST", rest + "/connectors", source);
      assertEquals(201, r.statusCode(), r.body());
      r = http("POST", rest + "/connectors", sink);
      assertEquals(201, r.statusCode(), r.body());
      await("both connectors running", () -> running(rest, "src") && running(rest, "sink"));
      await("the first half through the sink", () -> lines(out).size() >= 100);
      assertEquals(expected.subList(0, 100), lines(out));
      try (Admin admin = Brokers.admin(b)) {
        for (String t : List.of(configTopic, offsetTopic, statusTopic)) {
          ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, t);
          Config c = admin.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS).get(res);
          facts.put(t.replace(tag, "T") + " cleanup.policy", c.get("cleanup.policy").value());
        }
        List<String> listed = new ArrayList<>();
        for (GroupListing g : admin.listGroups().all().get(30, TimeUnit.SECONDS)) {
          if (g.groupId().equals(group)) {
            listed.add(g.type().map(Object::toString).orElse("?") + " " + g.protocol() + " "
                + g.groupState().map(Object::toString).orElse("?"));
          }
        }
        facts.put("worker group", listed);
        var described = admin.describeClassicGroups(List.of(group)).all().get(30, TimeUnit.SECONDS).get(group);
        facts.put("worker group protocol", described.protocol() + " " + described.protocolData() + " members "
            + described.members().size());
      }
    }
    // The second half is written while the worker is down; the restarted
    // worker resumes the source from its committed offset.
    Files.write(in, expected.subList(100, 200), StandardCharsets.UTF_8, StandardOpenOption.APPEND);
    try (Worker w = new Worker(props, dir.resolve("worker-2.log"))) {
      await("the connectors running again", () -> running(rest, "src") && running(rest, "sink"));
      await("the whole file through the sink", () -> lines(out).size() >= 200);
      Thread.sleep(1000); // a duplicate, if any, would land now
      assertEquals(expected, lines(out), "the file came through unchanged");
    }
    facts.put("lines through", lines(out).size());
    System.out.println(b + ": " + facts);
    assertEquals(Map.of(
        "T-configs cleanup.policy", "compact",
        "T-offsets cleanup.policy", "compact",
        "T-status cleanup.policy", "compact",
        "worker group", List.of("Classic connect Stable"),
        "worker group protocol", "connect sessioned members 1",
        "lines through", 200), facts);
  }
}
