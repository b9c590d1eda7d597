package dev.strata;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.utils.Exit;

/**
 * Runs one of Kafka's command-line tools in this JVM: its {@code main}, with
 * Kafka's exit and halt procedures overridden and its output captured.
 */
public final class Tool {
  private Tool() {}

  /** What a tool run printed and how it ended. */
  public record Result(int exit, String out, String err) {
    @Override
    public String toString() {
      return "exit " + exit + "\n--- stdout\n" + out + "\n--- stderr\n" + err;
    }
  }

  /** A tool called Kafka's exit procedure. */
  static final class ToolExit extends RuntimeException {
    final int status;

    ToolExit(int status) {
      super("exit " + status, null, false, false);
      this.status = status;
    }
  }

  /**
   * Runs a tool in a JVM of its own, for tools that report from shutdown
   * hooks (kafka-verifiable-producer prints its totals as the JVM exits).
   * The classpath is the one scripts/setup.sh resolved.
   */
  /** The Kafka classpath scripts/setup.sh resolved. */
  public static String classpath() throws java.io.IOException {
    Path cpFile = Path.of(System.getProperty("user.home"), ".cache", "strata-tools", "kafka.classpath");
    String tools = System.getenv("STRATA_TOOLS");
    if (tools != null && !tools.isEmpty()) {
      cpFile = Path.of(tools, "kafka.classpath");
    }
    return Files.readString(cpFile).strip();
  }

  public static Result runInOwnJvm(String mainClass, String... args) {
    try {
      String cp = classpath();
      Path java = Path.of(System.getProperty("java.home"), "bin", "java");
      List<String> cmd = new ArrayList<>(List.of(java.toString(), "-Xmx256m", "-cp", cp, mainClass));
      cmd.addAll(List.of(args));
      Process p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
      p.getOutputStream().close();
      var out = p.getInputStream().readAllBytes();
      var err = p.getErrorStream().readAllBytes();
      if (!p.waitFor(120, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IllegalStateException(mainClass + " did not exit within 120 s");
      }
      return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8), new String(err, StandardCharsets.UTF_8));
    } catch (java.io.IOException | InterruptedException e) {
      throw new IllegalStateException("cannot run " + mainClass, e);
    }
  }

  public static Result run(String mainClass, String... args) {
    return runWithInput("", mainClass, args);
  }

  /** Runs the tool with {@code stdin} as its standard input. */
  public static synchronized Result runWithInput(String stdin, String mainClass, String... args) {
    PrintStream out = System.out;
    PrintStream err = System.err;
    InputStream in = System.in;
    ByteArrayOutputStream o = new ByteArrayOutputStream();
    ByteArrayOutputStream e = new ByteArrayOutputStream();
    int status = 0;
    int[] first = {Integer.MIN_VALUE};
    try {
      System.setOut(new PrintStream(o, true, StandardCharsets.UTF_8));
      System.setErr(new PrintStream(e, true, StandardCharsets.UTF_8));
      System.setIn(new ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8)));
      // The first exit a tool asks for is its status: some tools catch
      // everything around the call and ask again with another code.
      Exit.setExitProcedure((code, msg) -> {
        if (first[0] == Integer.MIN_VALUE) {
          first[0] = code;
        }
        throw new ToolExit(code);
      });
      Exit.setHaltProcedure((code, msg) -> {
        if (first[0] == Integer.MIN_VALUE) {
          first[0] = code;
        }
        throw new ToolExit(code);
      });
      Class.forName(mainClass).getMethod("main", String[].class).invoke(null, (Object) args);
    } catch (InvocationTargetException ex) {
      Throwable cause = ex.getCause();
      if (cause instanceof ToolExit exit) {
        status = exit.status;
      } else {
        cause.printStackTrace(new PrintStream(e, true, StandardCharsets.UTF_8));
        status = -1;
      }
    } catch (ReflectiveOperationException ex) {
      throw new IllegalStateException("cannot run " + mainClass, ex);
    } finally {
      if (first[0] != Integer.MIN_VALUE) {
        status = first[0];
      }
      Exit.resetExitProcedure();
      Exit.resetHaltProcedure();
      System.setOut(out);
      System.setErr(err);
      System.setIn(in);
    }
    return new Result(status, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
  }
}
