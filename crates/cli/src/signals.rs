//! Ctrl-C and SIGTERM: a job stops issuing requests, lets the ones in flight
//! finish and journals them, rather than dying with paid responses unsaved.

/// Completes on the first SIGINT or SIGTERM.
pub async fn stop_requested(quiet: bool) {
    wait_for_signal().await;
    if !quiet {
        eprintln!("stopping: no new requests; waiting for the ones in flight to be journaled");
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the default behaviour stays: the process
        // dies, and the journal still holds every synced response.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
