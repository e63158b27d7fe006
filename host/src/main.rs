//! The `stask` command.

fn main() {
    std::process::exit(stask_host::cli::main());
}
