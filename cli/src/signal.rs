//! The one way this process hears Ctrl-C and SIGTERM.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves at the first Ctrl-C (SIGINT) or SIGTERM. If SIGTERM cannot be
/// watched, Ctrl-C still works.
pub async fn stop_requested() {
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}

/// A token cancelled at the first stop request (with `say` printed then);
/// the watch ends when the guard is dropped.
pub fn cancel_on_stop(say: &'static str) -> StopGuard {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    let watch = tokio::spawn(async move {
        stop_requested().await;
        eprintln!("{say}");
        t.cancel();
    });
    StopGuard { token, watch }
}

/// Watches for a stop request until dropped.
pub struct StopGuard {
    token: tokio_util::sync::CancellationToken,
    watch: tokio::task::JoinHandle<()>,
}

impl StopGuard {
    /// Cancelled at the first Ctrl-C or SIGTERM while the guard lives.
    pub fn token(&self) -> tokio_util::sync::CancellationToken {
        self.token.clone()
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// Resolves at the next Ctrl-C (SIGINT) only; never, if it cannot be watched.
pub async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
