//! The `lake` command-line tool.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = lake::cli::Cli::parse();
    match lake::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", format!("{err:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
