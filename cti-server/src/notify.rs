//! The service manager's notification protocol (`sd_notify(3)`, through the
//! `sd-notify` crate): `READY=1` once the store is open and the sockets
//! listen, `RELOADING=1` then `READY=1` around a reload, `STOPPING=1` on
//! shutdown, and `MAINPID=` from a process that replaced the main one by
//! re-exec. Nothing is sent without `NOTIFY_SOCKET` (not under systemd).

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Serving: the store is open and the sockets listen. A process started by
/// a re-exec also names itself the main process.
pub fn ready(replaced_main: bool) {
    if replaced_main {
        send(&[NotifyState::MainPid(std::process::id()), NotifyState::Ready]);
    } else {
        send(&[NotifyState::Ready]);
    }
}

/// A reload (or a re-exec) begins; `ready` ends it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    // Type=notify-reload needs the time; Type=notify takes it too.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// Shutting down (never sent by a process that handed over: the service
/// goes on in its successor).
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// A free-form status line (`systemctl status` shows it).
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}
