//! A real TCP proxy between a service under test and its upstream (PostgreSQL, a broker), for fault tests: it
//! forwards bytes both ways until told to [`Proxy::cut`], which kills every live connection at once (both sides
//! see the socket drop, as when a network path fails mid-statement) and refuses new ones for a while, or to
//! [`Proxy::stall`], which keeps every connection open and silent (as when packets are dropped and nothing resets).
//!
//! ```no_run
//! # async fn example() {
//! let proxy = courier_tests::proxy::Proxy::start("127.0.0.1:5432").await;
//! let url = format!("postgres://postgres@{}/test", proxy.addr());
//! // ... run the service on `url`, then:
//! proxy.cut(std::time::Duration::from_millis(300));
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; it stops (and drops every connection) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

struct State {
    /// Bumped by every cut: each connection's task watches it and ends when it changes.
    generation: watch::Sender<u64>,
    /// New connections are refused (accepted and closed at once) until then.
    refuse_until: Mutex<Option<Instant>>,
    /// While true nothing is forwarded: connections stay open and silent, new ones are accepted and held.
    stalled: watch::Sender<bool>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            generation: watch::Sender::new(0),
            refuse_until: Mutex::new(None),
            stalled: watch::Sender::new(false),
        });
        let upstream = upstream.to_owned();
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let refusing = state.refuse_until.lock().unwrap().is_some_and(|until| Instant::now() < until);
                    if refusing {
                        // Dropping the accepted socket closes it: the client sees its connection reset at once.
                        drop(client);
                        continue;
                    }
                    tokio::spawn(forward(client, upstream.clone(), state.clone()));
                }
            }
        });
        Self { addr, state, accept }
    }

    /// Where clients connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills every live connection now and refuses new ones for `refuse_for` (zero: accepts again at once).
    pub fn cut(&self, refuse_for: Duration) {
        *self.state.refuse_until.lock().unwrap() = Some(Instant::now() + refuse_for);
        self.state.stalled.send_replace(false);
        self.state.generation.send_modify(|generation| *generation += 1);
    }

    /// Stops forwarding: every connection stays open and nothing more crosses it, and new connections are
    /// accepted and never answered, as when a network path drops packets without resetting anything. Only
    /// [`Proxy::cut`] ends it (killing those connections: bytes in flight were lost).
    pub fn stall(&self) {
        self.state.stalled.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.generation.send_modify(|generation| *generation += 1);
    }
}

/// Copies both ways until either side closes or a cut comes; dropping both sockets then closes them. A stall
/// stops the copying but keeps both sockets until the cut.
async fn forward(mut client: TcpStream, upstream: String, state: Arc<State>) {
    let mut cut = state.generation.subscribe();
    let mut stalled = state.stalled.subscribe();
    if *stalled.borrow_and_update() {
        let _ = cut.changed().await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        _ = cut.changed() => return,
        _ = stalled.wait_for(|stalled| *stalled) => {}
    }
    let _ = cut.changed().await;
}
