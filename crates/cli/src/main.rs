//! `jiuzhu`: the command line of the medical financial assistance platform.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod applications;
mod clear;
mod config;
mod demo_store;
mod disburse;
mod feed;
mod gen;
mod notify;
mod rejected;
mod serve;
mod settings;
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
    /// Generate a realistic synthetic policy, spells and invoices (seeded).
    Gen(gen::GenArgs),
    /// Generate a demo district and simulate its bills under the example
    /// policy and a proposed one.
    Demo(DemoArgs),
    /// Write a new jiuzhu.toml with every setting at its default and a fresh
    /// personal-data key.
    Init(config::InitArgs),
    /// Work with the configuration (jiuzhu.toml and JIUZHU_* variables).
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Serve the hospitals' settlement API on the configured store.
    Serve(serve::ServeArgs),
    /// Policies in the store.
    Policy {
        #[command(subcommand)]
        command: admin::PolicyCommand,
    },
    /// Import department data into the store.
    Import {
        #[command(subcommand)]
        command: admin::ImportCommand,
    },
    /// API keys of hospitals and departments.
    Apikey {
        #[command(subcommand)]
        command: admin::ApiKeyCommand,
    },
    /// Periodic clearing (定期清算): recompute every invoice of a period's
    /// year and store what differs as top-ups to pay and recoveries to
    /// review; write the report into --out.
    Clear(clear::ClearArgs),
    /// Disbursement (拨付): bank accounts, payment batches approved by a
    /// second person, the bank payment file and the bank's return.
    Disburse {
        #[command(subcommand)]
        command: disburse::DisburseCommand,
    },
    /// The bureau's staff and their roles (reviewer, approver, auditor,
    /// admin), with their API tokens.
    Staff {
        #[command(subcommand)]
        command: applications::StaffCommand,
    },
    /// The commitment letter (告知承诺书) persons sign before applying.
    Letter {
        #[command(subcommand)]
        command: applications::LetterCommand,
    },
    /// Review of applications (救助审核): the queue, one application with its
    /// findings, approve or reject with a reason.
    Review {
        #[command(subcommand)]
        command: applications::ReviewCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: admin::AuditCommand,
    },
    /// Notifications to persons assisted and new recipients.
    Notify {
        #[command(subcommand)]
        command: notify::NotifyCommand,
    },
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Where to write the demo files.
    #[arg(long, default_value = "demo")]
    dir: PathBuf,
    /// Recipients in the district.
    #[arg(long, default_value_t = 7_500)]
    people: u64,
    /// Bills in the district.
    #[arg(long, default_value_t = 33_000)]
    invoices: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Exit status for input that breaks the formats (`formats.md`, "Bad input").
const BAD_INPUT: u8 = 2;

/// The proposed policy the demo compares against, shipped with the binary.
const WHAT_IF_POLICY: &str = include_str!("../../../fixtures/what-if-policy.toml");

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => finish_simulation(simulate::run(&args)),
        Command::Gen(args) => match gen::run(&args) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Demo(args) => demo(&args),
        Command::Init(args) => match config::init(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Config { command } => config::run(&command),
        Command::Serve(args) => serve::run(&args),
        Command::Policy { command } => admin::policy(&command),
        Command::Import { command } => admin::import(&command),
        Command::Apikey { command } => admin::apikey(&command),
        Command::Clear(args) => clear::run(&args, &admin::operator()),
        Command::Disburse { command } => disburse::run(&command),
        Command::Staff { command } => applications::staff(&command),
        Command::Letter { command } => applications::letter(&command),
        Command::Review { command } => applications::review(&command),
        Command::Audit { command } => admin::audit(&command),
        Command::Notify { command } => notify::run(&command),
    }
}

fn finish_simulation(result: Result<(), simulate::Failure>) -> ExitCode {
    match result {
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
    }
}

fn demo(args: &DemoArgs) -> ExitCode {
    let generated = gen::run(&gen::GenArgs {
        people: args.people,
        invoices: args.invoices,
        seed: args.seed,
        dir: args.dir.clone(),
    });
    match generated {
        Ok(summary) => println!("{summary}"),
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    }
    let what_if = args.dir.join("what-if-policy.toml");
    if let Err(error) = std::fs::write(&what_if, WHAT_IF_POLICY) {
        eprintln!("error: cannot write {}: {error}", what_if.display());
        return ExitCode::FAILURE;
    }
    let file = |name: &str| -> PathBuf { Path::new(&args.dir).join(name) };
    let code = finish_simulation(simulate::run(&simulate::SimulateArgs {
        policy: file("policy.toml"),
        spells: file("spells.csv"),
        invoices: file("invoices.csv"),
        out: file("results.csv"),
        compare: Some(what_if),
        explain: Vec::new(),
    }));
    println!(
        "\nThe demo's files are in {}: policy.toml, spells.csv, invoices.csv, results.csv.\n\
         Run your own: jiuzhu simulate --policy P --spells S --invoices I --out R [--compare P2]",
        args.dir.display()
    );
    code
}
