#!/usr/bin/env bash
# Consumer-group figures, Strata (file WAL) and the reference Apache Kafka
# broker side by side on this machine, in alternating rounds, medians printed:
#   - Kafka's ConsumerPerformance in a group (1 KiB records, 1,000,000 of them,
#     8 partitions, produced first by ProducerPerformance): MB/s and msg/s;
#   - rebalance time with the Java client for 10 and 100 members, classic
#     (cooperative-sticky) and consumer protocol: seconds until the group is
#     formed (every member owns one partition), and until it is settled again
#     after one member joins and one leaves (tests/java/tools/GroupBench.java);
#   - OffsetCommit throughput: synchronous commits per second by one member.
# Both brokers run with group.initial.rebalance.delay.ms=0.
#
#   scripts/bench-groups.sh [ROUNDS]     # default 3
#
# Needs: the release `strata` ($CARGO_TARGET_DIR/release, built unless
# STRATA_BENCH_NO_BUILD=1) and scripts/setup.sh's Kafka classpath.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
bench_name=groups
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

for round in $(seq 1 "$rounds"); do
  for target in strata kafka; do
    start "$target"
    topic="bench-cp-$round-$target"
    java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$addr" --create --topic "$topic" \
      --partitions 8 --replication-factor 1 >/dev/null
    java_tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records 1000000 \
      --record-size 1024 --throughput -1 --producer-props "bootstrap.servers=$addr" acks=all linger.ms=5 \
      batch.size=131072 >/dev/null
    cpline="$(java_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$addr" --topic "$topic" \
      --messages 1000000 --group "bench-cp-$round" --hide-header --timeout 120000 | tail -1)"
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ...
    echo "$target consumer_perf_mb_s $(awk -F', *' '{print $4}' <<<"$cpline")" >>"$out/results"
    echo "$target consumer_perf_msg_s $(awk -F', *' '{print $6}' <<<"$cpline")" >>"$out/results"
    for protocol in classic consumer; do
      for n in 10 100; do
        r="$(java_tool tests/java/tools/GroupBench.java rebalance "$addr" "$protocol" "$n")"
        echo "$target ${protocol}_${n}_formed_s $(field "$r" formed_s)" >>"$out/results"
        echo "$target ${protocol}_${n}_rebalance_s $(field "$r" rebalance_s)" >>"$out/results"
      done
    done
    r="$(java_tool tests/java/tools/GroupBench.java commit "$addr" 10)"
    echo "$target commits_per_s $(field "$r" commits_per_s)" >>"$out/results"
    stop_all
    echo "round $round $target done" >&2
  done
done

print_medians
