//! A TCP proxy the test controls: clients connect to it (the broker advertises
//! its address, so they cannot bypass it), and the test can cut every open
//! connection mid-flight or point it at a restarted broker.

use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy.
pub struct Proxy {
    pub addr: String,
    target: Arc<Mutex<String>>,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Binds a free port; connections are refused until a target is set.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let target = Arc::new(Mutex::new(String::new()));
        let (cuts, _) = watch::channel(0u64);
        let (t, c) = (Arc::clone(&target), cuts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let to = t.lock().expect("lock").clone();
                let mut cut = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&to).await else { return };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                    // Dropping both sockets cuts the connection both ways.
                });
            }
        });
        Proxy { addr, target, cuts, task }
    }

    /// Where new connections go.
    pub fn set_target(&self, addr: &str) {
        *self.target.lock().expect("lock") = addr.to_string();
    }

    /// A handle that cuts every open connection when sent to.
    pub fn cutter(&self) -> watch::Sender<u64> {
        self.cuts.clone()
    }

    /// Cuts every connection open now.
    pub fn cut_all(&self) {
        self.cuts.send_modify(|g| *g += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
