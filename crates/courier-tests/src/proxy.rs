//! A TCP proxy a test puts in front of a broker or database, to cut the connection on demand (a broker "down"
//! without touching the real one).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A running proxy on `127.0.0.1:0`; stops accepting when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

#[derive(Default)]
struct State {
    /// New connections are dropped at once until then.
    refuse_until: Mutex<Option<Instant>>,
    /// The live connections' copy tasks, aborted (both sockets closed) by a cut.
    live: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    /// Starts forwarding every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let refusing = shared.refuse_until.lock().unwrap().is_some_and(|until| Instant::now() < until);
                if refusing {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut live = shared.live.lock().unwrap();
                live.retain(|handle| !handle.is_finished());
                live.push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy { addr, state, accept }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every live connection and refuses new ones for `refuse_for`.
    pub fn cut(&self, refuse_for: Duration) {
        *self.state.refuse_until.lock().unwrap() = Some(Instant::now() + refuse_for);
        for handle in self.state.live.lock().unwrap().drain(..) {
            handle.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.live.lock().unwrap().drain(..).for_each(|handle| handle.abort());
    }
}
