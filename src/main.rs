//! Entry point: parse flags, run the command, clean up on every way out, print the error chain
//! once, and exit with the documented code.

use clap::Parser;
use dockyard::cli::Cli;
use dockyard::commands::{self, Ctx};
use dockyard::error::{categorize, Category, Failure};
use dockyard::settings::Settings;
use futures_util::FutureExt;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_json);
    let settings = match Settings::from_cli(cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dockyard: error: {e}");
            std::process::exit(Category::Usage.exit_code());
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        let ctx = Ctx::new(settings.output);
        // A panic is caught here so that the clean-up below (staging removed, helpers removed,
        // stopped containers started again) still runs.
        let mut command =
            Box::pin(std::panic::AssertUnwindSafe(commands::run(&ctx, settings)).catch_unwind());
        let panicked = |r: std::thread::Result<anyhow::Result<()>>| {
            r.unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic); cleaned up")))
        };
        let result = tokio::select! {
            r = &mut command => panicked(r),
            sig = shutdown_signal() => {
                // A restore's swap (or a backup's archive and manifest) is never cut short: wait
                // for it, then stop. If the whole command ends meanwhile, that is its result.
                if ctx.critical.active() {
                    tracing::warn!("{sig}: finishing the swap in progress first, then stopping");
                    tokio::select! {
                        biased;
                        r = &mut command => Some(panicked(r)),
                        _ = ctx.critical.idle() => None,
                    }
                    .unwrap_or_else(|| Err(Failure::interrupted(sig).into()))
                } else {
                    Err(Failure::interrupted(sig).into())
                }
            }
        };
        // Dropping the command first closes its engine streams: the engine will not remove a
        // helper while an archive read from it is still open.
        drop(command);
        ctx.cleanup().await;
        result
    });
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dockyard: error: {e:#}");
            categorize(&e).exit_code()
        }
    };
    // Exit without waiting for worker threads still draining a cancelled stream.
    std::process::exit(code);
}

/// Resolves on SIGINT or SIGTERM, naming the signal.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Logs go to stderr, as text or JSON: warnings by default (info for the daemon), more with -v, or
/// whatever `RUST_LOG` says.
fn init_logging(verbose: u8, json: bool) {
    let daemon = std::env::args().any(|a| a == "daemon");
    let default = match verbose {
        0 if daemon => "dockyard=info,warn",
        0 => "warn",
        1 => "dockyard=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}
