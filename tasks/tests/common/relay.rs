//! [`Relay`]: a loopback TCP relay in front of a node's sshd that counts the
//! connections reaching it, and those in which the client paid for a key
//! exchange (it sent its key-exchange init, message 30, after generating its
//! ephemeral keys: the costly half of an SSH handshake).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `SSH_MSG_KEX_ECDH_INIT` (RFC 5656; the hybrid post-quantum exchanges use it too).
const KEX_ECDH_INIT: u8 = 30;
/// `SSH_MSG_NEWKEYS`: after it, the stream is encrypted and no longer read.
const NEWKEYS: u8 = 21;

/// Counts kept by a running [`Relay`].
#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    key_exchanges: AtomicUsize,
}

/// A relay listening on 127.0.0.1; it stops with the test's runtime.
pub struct Relay {
    /// Where clients connect.
    pub port: u16,
    counts: Arc<Counts>,
}

impl Relay {
    /// Relays every connection on a new loopback port to `target`. While
    /// `target` refuses, a connection is accepted and closed at once.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(client, target, c.clone()));
            }
        });
        Relay { port, counts }
    }

    /// Connections accepted so far (knocks included).
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Connections in which the client sent its key-exchange init.
    pub fn key_exchanges(&self) -> usize {
        self.counts.key_exchanges.load(Ordering::SeqCst)
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, counts: Arc<Counts>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let up = async {
        let mut reader = Handshake::default();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if reader.feed(&buf[..n]) {
                counts.key_exchanges.fetch_add(1, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_server.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Reads the client's cleartext start of an SSH connection: its version
/// line, then binary packets (`uint32 length`, `byte padding`, payload)
/// until `NEWKEYS`.
#[derive(Default)]
struct Handshake {
    pending: Vec<u8>,
    banner_done: bool,
    done: bool,
}

impl Handshake {
    /// Takes more bytes; true once, when the key-exchange init goes by.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        if self.done {
            return false;
        }
        self.pending.extend_from_slice(bytes);
        if !self.banner_done {
            let Some(end) = self.pending.iter().position(|&b| b == b'\n') else {
                return false;
            };
            self.pending.drain(..=end);
            self.banner_done = true;
        }
        let mut seen = false;
        while self.pending.len() >= 6 {
            let len = u32::from_be_bytes(self.pending[..4].try_into().unwrap()) as usize;
            if self.pending.len() < 4 + len {
                break;
            }
            match self.pending[5] {
                KEX_ECDH_INIT => seen = true,
                NEWKEYS => {
                    self.done = true;
                    break;
                }
                _ => {}
            }
            self.pending.drain(..4 + len);
        }
        seen
    }
}
