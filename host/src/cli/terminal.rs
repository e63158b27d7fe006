//! Reading secrets from a terminal: echo off while a password or a secret setting is
//! typed.

/// Turns echo of the terminal on stdin off until dropped (the newline still shows).
/// Does nothing when stdin is not a terminal.
pub(super) struct NoEcho {
    saved: Option<libc::termios>,
}

impl NoEcho {
    /// Echo off, if stdin is a terminal.
    pub(super) fn new() -> NoEcho {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios the call fills in.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return NoEcho { saved: None };
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return NoEcho { saved: None };
            }
            NoEcho { saved: Some(saved) }
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}
