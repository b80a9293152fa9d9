//! The `lode` command: parses the command line, runs the command, maps errors to an exit code.
//!
//! All logic lives in the library crates; this binary only wires them to the terminal.

/// `println!` for results: a reader that stops reading (`lode … --json | head -1`) ends the
/// output quietly instead of panicking (`cli::stdout`).
macro_rules! outln {
    () => {
        $crate::cli::stdout::write(::std::format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::cli::stdout::write(::std::format_args!($($arg)*), true)
    };
}

/// `print!` for results, with [`outln!`]'s rules.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::stdout::write(::std::format_args!($($arg)*), false)
    };
}

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            cli::exit_code(&e)
        }
    };
    if cli::stdout::write_failed() {
        return ExitCode::FAILURE;
    }
    code
}
