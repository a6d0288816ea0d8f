//! The one way this process hears Ctrl-C and SIGTERM.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Once};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancelled at the first Ctrl-C or SIGTERM, and cancelled for good: a stop
/// asked for while one run ended and before the next began still stops the
/// process (`runs resume --failed` goes through runs one by one).
static STOP: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);
static WATCH: Once = Once::new();
/// How many parts of the process act on a stop right now (a run being
/// executed, a server, a worker). With none, a stop ends the process at
/// once, as the signal's default would.
static LISTENERS: AtomicUsize = AtomicUsize::new(0);
/// How many clean-ups that must not be cut short run right now ([`shield`]).
static SHIELDS: AtomicUsize = AtomicUsize::new(0);

/// While the returned guard lives, further stops are ignored: the process is
/// already stopping, and what it does now (the sandbox stopping its nodes and
/// removing their state) would be left half done by an exit. Two `sandbox
/// down`s in a row send two SIGTERMs; the second must not cut the first short.
pub fn shield() -> Shield {
    SHIELDS.fetch_add(1, Ordering::SeqCst);
    Shield
}

/// See [`shield`].
pub struct Shield;

impl Drop for Shield {
    fn drop(&mut self) {
        SHIELDS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts one listener while it lives: while one lives, a stop is left to
/// the code that checks [`stop_was_requested`] or holds a [`StopGuard`].
pub struct Listening;

/// Declares that this part of the process acts on a stop itself.
pub fn listening() -> Listening {
    Listening::new()
}

impl Listening {
    fn new() -> Listening {
        LISTENERS.fetch_add(1, Ordering::SeqCst);
        Listening
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        LISTENERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts listening, once per process (`main` calls it first thing). The
/// handlers are registered here, synchronously, so no signal falls between
/// registering and listening.
pub fn watch() {
    WATCH.call_once(|| {
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        tokio::spawn(async move {
            async fn next(s: Option<&mut tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let (mut term, mut int) = (term, int);
            let mut asked = false;
            loop {
                let code = tokio::select! {
                    _ = next(term.as_mut()) => 143,
                    _ = next(int.as_mut()) => 130,
                };
                STOP.cancel();
                if SHIELDS.load(Ordering::SeqCst) > 0 {
                    continue;
                }
                // A second stop, or one nobody acts on, ends the process now.
                if asked || LISTENERS.load(Ordering::SeqCst) == 0 {
                    std::process::exit(code);
                }
                asked = true;
            }
        });
    });
}

/// Resolves at the first Ctrl-C (SIGINT) or SIGTERM of the process, at once
/// if one came already. If SIGTERM cannot be watched, Ctrl-C still works.
pub async fn stop_requested() {
    watch();
    let _listening = Listening::new();
    STOP.cancelled().await;
}

/// Whether a Ctrl-C or SIGTERM came (since anything started listening).
pub fn stop_was_requested() -> bool {
    STOP.is_cancelled()
}

/// A token cancelled at the first stop request (with `say` printed then);
/// the watch ends when the guard is dropped.
pub fn cancel_on_stop(say: &'static str) -> StopGuard {
    watch();
    let token = CancellationToken::new();
    let t = token.clone();
    let watch = tokio::spawn(async move {
        STOP.cancelled().await;
        eprintln!("{say}");
        t.cancel();
    });
    StopGuard {
        token,
        watch,
        _listening: Listening::new(),
    }
}

/// Watches for a stop request until dropped.
pub struct StopGuard {
    token: CancellationToken,
    watch: tokio::task::JoinHandle<()>,
    _listening: Listening,
}

impl StopGuard {
    /// Cancelled at the first Ctrl-C or SIGTERM while the guard lives.
    pub fn token(&self) -> CancellationToken {
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
