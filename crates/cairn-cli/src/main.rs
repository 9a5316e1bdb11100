//! The `cairn` command: parses arguments, calls cairn-store, prints.
//! No store logic lives here.

mod args;
mod cmd_check;
mod cmd_drill;
mod cmd_import;
mod cmd_lifecycle;
mod cmd_repair;
mod cmd_replicate;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    // `cairn ls | head`: a reader that goes away ends the command quietly,
    // as it does other Unix tools, instead of with a panic message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info)
    }));
    args::unset_empty_env();
    let cli = match Cli::try_parse_from(args::normalize_go_flags(std::env::args_os().collect())) {
        Ok(cli) => cli,
        // Help and version (asked for, or shown for a bare `cairn`).
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("cairn: {}", args::usage_error_line(&e));
            return ExitCode::from(2);
        }
    };
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init(a) => commands::init(cli, a),
        Command::Snapshot(a) => commands::snapshot(cli, a),
        Command::List => commands::list(cli),
        Command::Ls(a) => commands::ls(cli, a),
        Command::Show(a) => commands::show(cli, a),
        Command::Restore(a) => commands::restore(cli, a),
        Command::Recover(a) => commands::recover(cli, a),
        Command::Stats => commands::stats(cli),
        Command::Index(a) => commands::index(cli, a),
        Command::Check(a) => cmd_check::check(cli, a),
        Command::Repair(a) => cmd_repair::repair(cli, a),
        Command::Forget(a) => cmd_lifecycle::forget(cli, a),
        Command::Policy(a) => cmd_lifecycle::policy(cli, a),
        Command::Prune(a) => cmd_lifecycle::prune(cli, a),
        Command::PurgeTenant(a) => cmd_lifecycle::purge_tenant(cli, a),
        Command::Replicate(a) => cmd_replicate::replicate(cli, a),
        Command::Unlock => cmd_replicate::unlock(cli),
        Command::Drill(a) => cmd_drill::drill(cli, a),
        Command::Drills => cmd_drill::drills(cli),
        Command::ImportHitkeepBackups(a) => cmd_import::import(cli, a),
    }
}
