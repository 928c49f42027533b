//! Entry point: parse flags, run the command, clean up on every way out, report the error once
//! (text or JSON on stderr; with `--json` also on stdout), and exit with the documented code.

use clap::Parser;
use dockyard::cli::Cli;
use dockyard::commands::{self, Ctx};
use dockyard::error::{describe, Category, Failure};
use dockyard::outcome::categorize;
use dockyard::render::{self, Output, Renderer};
use dockyard::settings::Settings;
use futures_util::FutureExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

fn main() {
    // Inside a helper container, as dockyard's agent: no flags, no logging, no runtime.
    if let Some(code) = dockyard::agent::main_if_agent() {
        std::process::exit(code);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    init_logging(cli.verbose, cli.log_json);
    let log_json = cli.log_json;
    let json = cli.json;
    // `run` and `daemon` report in JSON Lines, a failure to read their config file included.
    let lines = matches!(
        cli.command,
        dockyard::cli::Command::Run(_) | dockyard::cli::Command::Daemon(_)
    );
    let mut settings = match Settings::from_cli(cli) {
        Ok(s) => s,
        Err(e) => {
            let out = Renderer::new(Output {
                json,
                lines,
                progress: false,
                quiet: false,
            });
            fail(&out, log_json, e.category, &e.message);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ctx = Ctx::new(
        settings.dirs.clone(),
        settings.engine.clone(),
        settings.output,
        settings.engine_ssh_config.clone(),
        settings.helper_timeout,
        std::mem::take(&mut settings.engines),
    );
    // A command run on its own says how it went, on every way out (signals and panics included).
    let notify = settings.notify.take();
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        // The handlers are in place before the command starts: a SIGTERM in its first instant
        // (systemd stopping a daemon that just started) is handled, never the default kill.
        let shutdown = shutdown_signal();
        // A panic is caught here so that the clean-up below (staging removed, helpers removed,
        // stopped containers started again) still runs.
        let mut command =
            Box::pin(std::panic::AssertUnwindSafe(commands::run(&ctx, settings)).catch_unwind());
        let panicked = |r: std::thread::Result<anyhow::Result<commands::Outcome>>| {
            r.unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic); cleaned up")))
        };
        let result = tokio::select! {
            r = &mut command => panicked(r),
            sig = shutdown => {
                // The daemon between jobs: nothing to abandon, so a clean stop. A restore's swap
                // (or a backup's archive and manifest) is never cut short: wait for it, then
                // stop. If the whole command ends meanwhile, that is its result.
                if ctx.idle.load(std::sync::atomic::Ordering::SeqCst) {
                    tracing::info!("{sig}: no job running; stopping");
                    Ok(commands::Outcome::default())
                } else if ctx.critical.active() {
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
        dockyard::agent::pipe::remove_own_copy();
        if let Some(n) = &notify {
            let (backup, error) = match &result {
                Ok(done) => (
                    done.backup.as_ref().map(|(id, size)| (id.as_str(), *size)),
                    None,
                ),
                Err(e) => (None, Some(describe(e))),
            };
            n.send(backup, error, started.elapsed().as_secs_f64()).await;
        }
        result
    });
    match result {
        // Exit without waiting for worker threads still draining a cancelled stream.
        Ok(_) => std::process::exit(0),
        Err(e) => fail(&ctx.out, log_json, categorize(&e), &describe(&e)),
    }
}

/// Reports the final error once: on stderr as text (or as a JSON log line with `--log-json`),
/// and on stdout as the JSON error document with `--json`; then exits with its code.
fn fail(out: &Renderer, log_json: bool, category: Category, message: &str) -> ! {
    out.error(category, message);
    if log_json {
        tracing::error!(
            exit_code = category.exit_code(),
            category = category.name(),
            "{message}"
        );
    } else {
        eprintln!("dockyard: error: {message}");
    }
    std::process::exit(category.exit_code());
}

/// A command line clap refused: help and version as clap prints them; an error as clap's text,
/// or in the JSON shapes when `--json` or `--log-json` was asked for.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        e.exit();
    }
    let asked = |flag: &str| std::env::args().skip(1).any(|a| a == flag);
    let (json, log_json) = (asked("--json"), asked("--log-json"));
    if !json && !log_json {
        e.exit();
    }
    init_logging(0, log_json);
    // clap's text, without its usage and hint paragraphs, on one line.
    let text = e.to_string();
    let body = text.split("\n\n").next().unwrap_or_default();
    let message = body
        .trim_start_matches("error: ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.as_str();
    let out = Renderer::new(Output {
        json,
        lines: false,
        progress: false,
        quiet: false,
    });
    if !log_json {
        eprint!("{}", e.render());
        out.error(Category::Usage, message);
        std::process::exit(Category::Usage.exit_code());
    }
    fail(&out, log_json, Category::Usage, message)
}

/// Installs the SIGINT and SIGTERM handlers now; the future resolves on either, naming it.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

/// Logs go to stderr, as text or JSON: warnings by default (info for the daemon), more with -v, or
/// whatever `RUST_LOG` says; never the Docker client's HTTP bodies (`log_filter`).
fn init_logging(verbose: u8, json: bool) {
    let daemon = std::env::args().any(|a| a == "daemon");
    // The AWS SDK warns about things dockyard reports itself (a failed credential provider, a
    // retried request), so it is quiet unless asked for (-v, RUST_LOG).
    let default = match verbose {
        0 if daemon => "dockyard=info,warn,aws_config=error,aws_smithy_runtime=error,aws_runtime=error,aws_sdk_s3=error",
        0 => "warn,aws_config=error,aws_smithy_runtime=error,aws_runtime=error,aws_sdk_s3=error",
        1 => "dockyard=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!json && render::colour_on_stderr())
        .with_target(false);
    let allowed = filter_fn(dockyard::log_filter::allowed);
    if json {
        fmt.json().finish().with(allowed).init();
    } else {
        fmt.finish().with(allowed).init();
    }
}
