//! `jiuzhu`: the command line of the medical financial assistance platform.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod simulate;

/// Jiuzhu (救助): medical financial assistance for special populations.
#[derive(Debug, Parser)]
#[command(name = "jiuzhu", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine over policy, spells and invoices files and write results.csv.
    Simulate(simulate::SimulateArgs),
}

/// Exit status for input that breaks the formats (`formats.md`, "Bad input").
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => match simulate::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(simulate::Failure::BadInput(problems)) => {
                eprint!("{problems}");
                eprintln!("Nothing was written: correct the input and run again.");
                ExitCode::from(BAD_INPUT)
            }
            Err(simulate::Failure::Other(error)) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}
