//! alp-authz: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = alp_authz::cli::Cli::parse();
    alp_authz::app::init_tracing();
    alp_authz::app::run(cli)
}
