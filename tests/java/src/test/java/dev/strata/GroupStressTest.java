package dev.strata;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strata.Brokers.Broker;
import dev.strata.GroupTest.Member;
import dev.strata.GroupTest.Ownership;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Consumer groups under churn, on both brokers and both protocols (its own suite: it is long). */
class GroupStressTest {
  static java.util.stream.Stream<org.junit.jupiter.params.provider.Arguments> brokersAndProtocols() {
    return GroupTest.brokersAndProtocols();
  }

  /** Strata's count of UNKNOWN_MEMBER_ID answers over every group API, from its /metrics. */
  static double unknownMemberErrors() throws Exception {
    String url = System.getProperty("strata.metrics");
    assertTrue(url != null && !url.isBlank(), "system property strata.metrics is not set");
    var client = java.net.http.HttpClient.newHttpClient();
    var body = client.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(url)).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString()).body();
    double total = 0;
    for (String line : body.split("\n")) {
      if (line.startsWith("strata_request_errors_total{") && line.contains("error=\"UnknownMemberId\"")) {
        total += Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
      }
    }
    return total;
  }

  /**
   * Stress: 50 members join one group of 50 partitions, then three times ten
   * leave and ten new ones join. Every generation gives each partition to one
   * member (no partition owned twice, from the callbacks), the group settles
   * after each wave, and on Strata the UNKNOWN_MEMBER_ID answers are at most
   * one per join or leave (its error metric).
   */
  @ParameterizedTest(name = "on {0}, {1} protocol")
  @MethodSource("brokersAndProtocols")
  void fiftyMembersJoiningAndLeavingRepeatedly(Broker b, String proto) throws Exception {
    int partitions = 50;
    String topic = Brokers.topic("stress");
    Brokers.createTopic(b, topic, partitions, Map.of());
    String group = Brokers.topic("stress-g");
    boolean strata = b.name().equals("strata");
    double errorsBefore = strata ? unknownMemberErrors() : 0;
    Ownership own = new Ownership();
    Set<String> seen = ConcurrentHashMap.newKeySet();
    Properties extra = GroupTest.protocol(proto, proto.equals("classic") ? "org.apache.kafka.clients.consumer.CooperativeStickyAssignor" : null);
    List<Member> members = new ArrayList<>();
    int joinsAndLeaves = 0;
    int next = 0;
    try {
      for (; next < 50; next++) {
        members.add(new Member(b, group, topic, "s" + next, extra, own, seen));
        joinsAndLeaves++;
      }
      GroupTest.await("fifty members sharing fifty partitions", () -> GroupTest.settled(own, members, partitions));
      for (int wave = 0; wave < 3; wave++) {
        for (int i = 0; i < 10; i++) {
          members.remove(0).close();
          joinsAndLeaves++;
        }
        for (int i = 0; i < 10; i++, next++) {
          members.add(new Member(b, group, topic, "s" + next, extra, own, seen));
          joinsAndLeaves++;
        }
        GroupTest.await("wave " + wave + " settled", () -> GroupTest.settled(own, members, partitions));
      }
      assertEquals(List.of(), own.violations, "no partition owned twice");
    } finally {
      GroupTest.closeAll(members);
    }
    GroupTest.assertNoErrors(members);
    if (strata) {
      double unknown = unknownMemberErrors() - errorsBefore;
      assertTrue(unknown <= joinsAndLeaves, unknown + " UNKNOWN_MEMBER_ID answers for " + joinsAndLeaves + " joins and leaves");
    }
  }
}
