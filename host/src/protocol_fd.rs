//! Keeping a child process's protocol stream apart from what plugin code prints.
//!
//! Probe and runner processes talk to the host over stdout. Plugin code may `println!`,
//! which would corrupt that stream, so before loading any plugin the child duplicates
//! its stdout to a private descriptor for the protocol and points descriptor 1 at
//! stderr, where stray output is harmless (the host logs it).

use std::fs::File;
use std::os::fd::FromRawFd;

/// Moves the real stdout to a new descriptor, redirects fd 1 to stderr, and returns
/// the protocol stream.
pub fn take_stdout() -> File {
    // SAFETY: plain descriptor juggling on descriptors this process owns, done before
    // any other thread writes to stdout.
    unsafe {
        let proto = libc::dup(1);
        if proto < 0 {
            // Without a private descriptor, fall back to sharing stdout.
            return File::from_raw_fd(1);
        }
        libc::fcntl(proto, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::dup2(2, 1);
        File::from_raw_fd(proto)
    }
}
