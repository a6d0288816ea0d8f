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

/// A token cancelled at the first stop request, with `say` printed then.
pub fn cancel_on_stop(say: &'static str) -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        stop_requested().await;
        eprintln!("{say}");
        t.cancel();
    });
    token
}

/// Resolves at the next Ctrl-C (SIGINT) only; never, if it cannot be watched.
pub async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
