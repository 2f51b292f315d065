//! The `lake` command-line tool.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    quiet_on_broken_pipe();
    let cli = lake::cli::Cli::parse();
    match lake::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", lake::cli::error_text(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// A reader that stops early (`lake timeline T | head`) closes the pipe; printing then fails, and
/// `println!` panics. That is no error of lake's: end quietly, as command-line tools do.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
