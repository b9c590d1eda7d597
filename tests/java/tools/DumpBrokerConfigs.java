// Prints the broker configs of a running Kafka broker, one per line, as
// name<TAB>default<TAB>type<TAB>sensitive<TAB>read-only, where default is the
// value of the DEFAULT_CONFIG synonym or \N when Kafka has none. Run by
// scripts/gen-broker-configs.sh as a single-file Java program.
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.common.config.ConfigResource;

public class DumpBrokerConfigs {
  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put("bootstrap.servers", args[0]);
    try (Admin admin = Admin.create(props)) {
      String node = Integer.toString(admin.describeCluster().nodes().get().iterator().next().id());
      ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, node);
      Config config = admin.describeConfigs(List.of(broker), new DescribeConfigsOptions().includeSynonyms(true))
          .all().get().get(broker);
      List<ConfigEntry> entries = new ArrayList<>(config.entries());
      entries.sort(Comparator.comparing(ConfigEntry::name));
      for (ConfigEntry e : entries) {
        String dflt = "\\N";
        for (ConfigEntry.ConfigSynonym s : e.synonyms()) {
          if (s.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG && s.value() != null) {
            dflt = s.value();
          }
        }
        System.out.println(String.join("\t", e.name(), dflt, e.type().name(),
            Boolean.toString(e.isSensitive()), Boolean.toString(e.isReadOnly())));
      }
    }
  }
}
