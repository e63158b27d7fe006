//! Naming how a child process ended.

/// Name of a signal number (`SIGSEGV`), or `signal N` for unusual ones.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

/// Human meaning of common crash signals.
fn signal_meaning(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "segmentation fault",
        libc::SIGABRT => "aborted",
        libc::SIGBUS => "bus error",
        libc::SIGILL => "illegal instruction",
        libc::SIGFPE => "arithmetic exception",
        libc::SIGKILL => "killed",
        libc::SIGTERM => "terminated",
        _ => "",
    }
}

/// "killed by signal SIGSEGV (segmentation fault)" or "exited with status 3".
pub fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(sig)) => {
            let meaning = signal_meaning(sig);
            if meaning.is_empty() {
                format!("killed by {}", signal_name(sig))
            } else {
                format!("killed by signal {} ({meaning})", signal_name(sig))
            }
        }
        (Some(code), None) => format!("exited with status {code}"),
        (None, None) => "ended for an unknown reason".to_owned(),
    }
}
