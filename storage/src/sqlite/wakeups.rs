//! Wake-ups on one machine: each listening service binds a Unix datagram socket
//! `run/wake-{pid}.sock` beside the database; a notification sends one byte to every
//! socket there. Sockets of services that are gone refuse the datagram and are
//! removed. (SQLite has no LISTEN/NOTIFY, and polling fast enough for quick pickup
//! would keep the database busy.)

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use super::SqliteStore;
use crate::error::{ErrorKind, StoreError};
use crate::wakeups::{WakeListener, Wakeups};

impl SqliteStore {
    fn run_dir(&self) -> PathBuf {
        self.dir().join("run")
    }
}

/// A bound wake-up socket, removed when dropped.
struct SocketListener {
    socket: UnixDatagram,
    path: PathBuf,
}

impl WakeListener for SocketListener {
    fn wait(&self, timeout: Duration) -> bool {
        let mut buf = [0u8; 16];
        let _ = self
            .socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
        if self.socket.recv(&mut buf).is_err() {
            return false;
        }
        // Several pending wake-ups count as one.
        let _ = self.socket.set_nonblocking(true);
        while self.socket.recv(&mut buf).is_ok() {}
        let _ = self.socket.set_nonblocking(false);
        true
    }
}

impl Drop for SocketListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Wakeups for SqliteStore {
    fn notify_work(&self) {
        let Ok(entries) = std::fs::read_dir(self.run_dir()) else {
            return;
        };
        let Ok(sender) = UnixDatagram::unbound() else {
            return;
        };
        let _ = sender.set_nonblocking(true);
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "sock") {
                continue;
            }
            match sender.send_to(b"w", &path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    // Nobody listens: a service that died without cleaning up.
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => {}
            }
        }
    }

    fn listen(&self) -> Result<Box<dyn WakeListener>, StoreError> {
        let dir = self.run_dir();
        let fail = |e: std::io::Error| {
            StoreError::new(
                ErrorKind::Io,
                format!("bind a wake-up socket in {}", dir.display()),
                e,
            )
        };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let path = dir.join(format!("wake-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).map_err(fail)?;
        Ok(Box::new(SocketListener { socket, path }))
    }
}
