//! Kafka's Java tools and programs as processes of a test: the classpath
//! `scripts/setup.sh` resolves, stdout collected line by line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `java -cp <Kafka's classpath> <main> args...` (scripts/setup.sh writes
/// the classpath), quiet logging.
pub fn kafka_tool(main: &str, args: &[&str]) -> Command {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let tools =
        std::env::var_os("STRATA_TOOLS").map(PathBuf::from).unwrap_or(home.join(".cache/strata-tools"));
    let cp = std::fs::read_to_string(tools.join("kafka.classpath"))
        .expect("kafka.classpath: run scripts/setup.sh");
    let log4j = std::env::temp_dir().join("strata-tests-log4j2.properties");
    std::fs::write(&log4j, "status = warn\nrootLogger.level = warn\n").expect("log4j config");
    let mut cmd = Command::new("java");
    cmd.arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(cp.trim())
        .arg(main)
        .args(args);
    cmd
}

/// A tool running with its output's lines collected.
pub struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start java");
        let lines: Arc<Mutex<Vec<String>>> = Default::default();
        let out = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        // Standard error is kept too, marked, for a failure's message.
        let err = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(format!("stderr: {line}"));
            }
        });
        Running { child, lines }
    }

    /// Its output so far: stdout's lines, and stderr's marked `stderr: `.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Waits for the exit, up to `limit`; kills it past that.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Kills it with SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `java -cp <Kafka's classpath> tests/java/tools/<file>` (a single-file
/// program, compiled at launch) with `args`.
pub fn java_program(file: &str, args: &[&str]) -> Command {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/java/tools").join(file);
    kafka_tool(&path.to_string_lossy(), args)
}
