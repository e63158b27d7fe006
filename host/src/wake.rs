//! Waking idle services when work appears, without polling the database.
//!
//! Each running service binds a Unix datagram socket `{home}/run/wake-{pid}.sock`. A
//! process that creates or requeues tasks (CLI, API, another service) sends one byte to
//! every socket there; a service that receives it claims at once. Sockets of services
//! that are gone refuse the datagram and are removed. Losing a wake-up only delays work
//! until the service's slow fallback check.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::home::Home;

fn run_dir(home: &Home) -> PathBuf {
    home.root().join("run")
}

/// A bound wake-up socket, removed when dropped.
pub struct WakeSocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl WakeSocket {
    /// Binds this process's socket.
    pub fn bind(home: &Home) -> std::io::Result<WakeSocket> {
        let dir = run_dir(home);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("wake-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        Ok(WakeSocket { socket, path })
    }

    /// Blocks until a wake-up arrives (several pending ones count as one).
    pub fn wait(&self) -> std::io::Result<()> {
        let mut buf = [0u8; 16];
        self.socket.recv(&mut buf)?;
        self.socket.set_nonblocking(true)?;
        while self.socket.recv(&mut buf).is_ok() {}
        self.socket.set_nonblocking(false)?;
        Ok(())
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WakeSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Tells every service of this home that there may be work. Never fails: a missed
/// wake-up is caught by the services' fallback check.
pub fn notify(home: &Home) {
    let Ok(entries) = std::fs::read_dir(run_dir(home)) else {
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
