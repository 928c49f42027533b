//! `dockyard man`: the manual, from the same clap definitions as `--help`. On stdout it is one
//! page, dockyard(1), holding every command and its options (what `dockyard man > dockyard.1`
//! installs); with `--dir` it is one page per command (dockyard.1, dockyard-backup.1,
//! dockyard-config-check.1, ...), and every `dockyard-*(1)` a page names is a page written beside
//! it (clap_mangen's own pages name subcommand pages whether or not they exist).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};

use super::Ctx;

/// Prints the single page, or writes one page per command into `dir` and lists them.
pub fn run(ctx: &Ctx, dir: Option<&Path>) -> Result<()> {
    let Some(dir) = dir else {
        ctx.out.raw(single_page().as_bytes());
        return Ok(());
    };
    let written = write_pages(dir)?;
    let shown: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    if ctx.out.output().json {
        ctx.out.document(serde_json::json!({ "pages": shown }));
    } else {
        for path in &shown {
            ctx.out.line(path);
        }
    }
    Ok(())
}

/// The command tree as the pages show it: built (so each subcommand knows its full name, e.g.
/// `dockyard logs rotate` and `dockyard-logs-rotate`), without clap's `help` subcommand, which has
/// no page (`-h`/`--help` is on every page).
fn tree() -> clap::Command {
    let mut cmd = crate::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// A page generator for `cmd`, the `.TH` line naming dockyard and its version.
fn man(cmd: &clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd.clone())
        .source(format!("dockyard {}", env!("CARGO_PKG_VERSION")))
        .manual("dockyard manual")
}

/// Every subcommand under `cmd`, depth first in `--help` order (`logs`, `logs rotate`, ...).
fn descendants(cmd: &clap::Command) -> Vec<clap::Command> {
    let mut all = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        all.push(sub.clone());
        all.extend(descendants(sub));
    }
    all
}

/// A page's file and cross-reference name: `dockyard-config-check`.
fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

/// Writes dockyard.1 and one page per subcommand into `dir` (created if missing); returns the
/// paths, dockyard.1 first.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the manual directory {}", dir.display()))?;
    let root = tree();
    let mut pages = vec![(PathBuf::from("dockyard.1"), main_page(&root))];
    for sub in descendants(&root) {
        pages.push((
            PathBuf::from(format!("{}.1", page_name(&sub))),
            command_page(&sub)?,
        ));
    }
    let mut written = Vec::new();
    for (file, text) in pages {
        let path = dir.join(file);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write the manual page {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// dockyard.1 of the page set: its own options, then its commands by their pages' names.
fn main_page(root: &clap::Command) -> String {
    let man = man(root);
    let mut out = head(&man);
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        roff.control("TP", []);
        roff.text([bold(format!("{}(1)", page_name(sub)))]);
        roff.text([roman(about(sub))]);
    }
    out.push_str(&roff.to_roff());
    out.push_str(&tail(root));
    out
}

/// The page of one subcommand: clap_mangen's (its subcommands named by their own pages'
/// names), and a SEE ALSO naming the pages above it.
fn command_page(cmd: &clap::Command) -> Result<String> {
    let mut bytes = Vec::new();
    man(cmd).render(&mut bytes)?;
    let mut out = String::from_utf8(bytes).context("clap_mangen wrote a page that is not UTF-8")?;
    // dockyard logs rotate: dockyard-logs(1), dockyard(1).
    let words: Vec<&str> = full_name(cmd).split(' ').collect();
    let parents: Vec<String> = (1..words.len())
        .rev()
        .map(|n| format!("{}(1)", words[..n].join("-")))
        .collect();
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(parents.join(", "))]);
    out.push_str(&roff.to_roff());
    Ok(out)
}

/// The one page of `dockyard man`: dockyard's own options, then a section per command (its
/// synopsis, description and options; the global options are said once, at the top).
pub fn single_page() -> String {
    let root = tree();
    let mut out = head(&man(&root));
    let subs = descendants(&root);
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in &subs {
        roff.control("TP", []);
        roff.text([bold(full_name(sub))]);
        roff.text([roman(about(sub))]);
    }
    out.push_str(&roff.to_roff());
    let globals: Vec<clap::Id> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().clone())
        .collect();
    for sub in subs {
        let own = sub.mut_args(|a| {
            if globals.contains(a.get_id()) {
                a.hide(true)
            } else {
                a
            }
        });
        out.push_str(&command_section(&own));
    }
    out.push_str(&tail(&root));
    out
}

/// `dockyard logs rotate`, as typed.
fn full_name(cmd: &clap::Command) -> &str {
    cmd.get_bin_name().unwrap_or_else(|| cmd.get_name())
}

/// A command's one-line summary.
fn about(cmd: &clap::Command) -> String {
    cmd.get_about().map(|a| a.to_string()).unwrap_or_default()
}

/// `.TH`, NAME, SYNOPSIS, DESCRIPTION and the options of `man`'s command.
fn head(man: &clap_mangen::Man) -> String {
    let mut bytes = Vec::new();
    for part in [
        clap_mangen::Man::render_title,
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
    ] {
        part(man, &mut bytes).expect("writing to memory");
    }
    String::from_utf8(bytes).expect("clap_mangen writes UTF-8")
}

/// EXIT STATUS (the root's after-help table) and VERSION.
fn tail(root: &clap::Command) -> String {
    let mut roff = Roff::new();
    if let Some(codes) = root.get_after_help() {
        roff.control("SH", ["EXIT STATUS"]);
        roff.control("nf", []);
        for line in codes.to_string().lines().skip(1) {
            roff.text([roman(line)]);
        }
        roff.control("fi", []);
    }
    roff.control("SH", ["VERSION"]);
    roff.text([roman(env!("CARGO_PKG_VERSION"))]);
    roff.to_roff()
}

/// One command's section of the single page: `.SH DOCKYARD BACKUP`, its synopsis and
/// description, and its option groups as `.SS` subsections.
fn command_section(cmd: &clap::Command) -> String {
    let man = man(cmd);
    let mut bytes = Vec::new();
    for part in [
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
    ] {
        part(&man, &mut bytes).expect("writing to memory");
    }
    let text = String::from_utf8(bytes).expect("clap_mangen writes UTF-8");
    let mut roff = Roff::new();
    roff.control("SH", [full_name(cmd).to_uppercase().as_str()]);
    let mut out = roff.to_roff();
    for line in text.lines() {
        match line.strip_prefix(".SH ") {
            Some("SYNOPSIS") => {}
            Some("DESCRIPTION") => out.push_str(".PP\n"),
            Some(heading) => {
                let heading = heading.trim_matches('"').to_lowercase();
                let mut chars = heading.chars();
                let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
                let mut sub = Roff::new();
                sub.control(
                    "SS",
                    [format!("{}{}", first.unwrap_or_default(), chars.as_str()).as_str()],
                );
                out.push_str(&sub.to_roff());
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}
