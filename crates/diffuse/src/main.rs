//! The `diffuse` command.

mod cli;

use clap::Parser;

fn main() {
    // Restore the default SIGPIPE action, as other Unix tools have: a reader that goes away (`| head`) ends
    // the process quietly instead of making println! panic.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_DFL at startup, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        // One line: the error and its causes, as ripgrep does.
        // A cause that its parent's message already ends with (an I/O error after its path) is said once.
        let mut chain: Vec<String> = Vec::new();
        for cause in e.chain().map(|c| c.to_string()) {
            if !chain.last().is_some_and(|prev| prev.ends_with(&cause)) {
                chain.push(cause);
            }
        }
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
