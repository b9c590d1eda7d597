//! Reads the broker's Prometheus `/metrics` (Strata's admin port): object-store
//! request counts and the upload backlog.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// One scrape: sample (name with labels, as rendered) to value.
#[derive(Debug, Clone, Default)]
pub struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// A sample's value, 0 when absent.
    pub fn get(&self, sample: &str) -> f64 {
        self.0.get(sample).copied().unwrap_or(0.0)
    }

    /// Object-store requests of `op` (`put`, `put_part`, `get`, ...).
    pub fn requests(&self, op: &str) -> f64 {
        self.get(&format!("strata_object_store_requests_total{{op=\"{op}\"}}"))
    }

    /// PUT-class requests counted as the cost figures do: single PUTs,
    /// UploadPart and CompleteMultipartUpload.
    pub fn puts(&self) -> f64 {
        self.requests("put") + self.requests("put_part") + self.requests("complete_multipart")
    }
}

/// `GET /metrics` from `addr` (HOST:PORT).
pub fn scrape(addr: &str) -> Result<Scrape> {
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else { bail!("bad response from {addr}") };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{addr}/metrics: {}", head.lines().next().unwrap_or_default());
    }
    let mut out = HashMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(name.to_string(), v);
        }
    }
    Ok(Scrape(out))
}

/// Waits until the broker has uploaded its WAL backlog (all data in objects).
pub fn wait_for_upload(addr: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while scrape(addr)?.get("strata_upload_backlog_bytes") > 0.0 {
        if Instant::now() > deadline {
            bail!("the upload backlog did not drain within {}s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Waits until the broker has been idle in the background for `quiet`: no
/// upload backlog and no compaction progress (so that background work of an
/// earlier phase does not land in the next phase's figures).
pub fn wait_for_quiet(addr: &str, quiet: Duration, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = f64::NAN;
    let mut since = Instant::now();
    loop {
        let s = scrape(addr)?;
        let progress = s.get("strata_compaction_bytes_total");
        if progress != last || s.get("strata_upload_backlog_bytes") > 0.0 {
            last = progress;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("background work did not settle within {}s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The object-store requests between two scrapes, per GiB of `bytes`.
pub fn requests_line(before: &Scrape, after: &Scrape, bytes: u64) -> String {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    let d = |f: &dyn Fn(&Scrape) -> f64| f(after) - f(before);
    let puts = d(&|s| s.puts());
    let gets = d(&|s| s.requests("get"));
    let lists = d(&|s| s.requests("list"));
    let deletes = d(&|s| s.requests("delete"));
    let heads = d(&|s| s.requests("head"));
    let compacted = d(&|s| s.get("strata_compaction_objects_total"));
    format!(
        "object store: {puts:.0} PUT ({:.1} per GiB), {gets:.0} GET, {heads:.0} HEAD, {lists:.0} LIST, \
         {deletes:.0} DELETE for {:.2} GiB; {compacted:.0} compacted objects written",
        puts / gib.max(1e-9),
        gib
    )
}
