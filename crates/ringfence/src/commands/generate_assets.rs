//! Man pages and shell completions, from the same clap definition that parses the command
//! line, so they can never describe flags the binary does not have: `ringfence completions
//! SHELL` and `ringfence man [COMMAND]` print them for people; `ringfence generate-assets DIR`
//! (hidden) writes the files the packages ship; `scripts/package.sh` runs it before `cargo deb`.

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Write man pages and shell completions (used by packaging).
#[derive(Debug, clap::Args)]
pub struct GenerateAssetsArgs {
    /// Output directory: man pages go to DIR/man, completions to DIR/completions.
    dir: PathBuf,
}

/// Print a shell completion script.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    ringfence completions bash > /etc/bash_completion.d/ringfence\n  \
    ringfence completions zsh > \"${fpath[1]}/_ringfence\"\n  \
    ringfence completions fish > ~/.config/fish/completions/ringfence.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    shell: Shell,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "ringfence",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}

/// Print a man page (roff) for ringfence or one of its commands.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    ringfence man | man -l -\n  \
    ringfence man rollout | man -l -")]
pub struct ManArgs {
    /// The command whose page to print (default: ringfence itself).
    command: Option<String>,
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let root = super::Cli::command();
    let page = match &args.command {
        None => clap_mangen::Man::new(root),
        Some(name) => {
            let sub = root
                .get_subcommands()
                .find(|sub| sub.get_name() == name && !sub.is_hide_set())
                .with_context(|| format!("no command {name:?}; `ringfence --help` lists them"))?
                .clone();
            clap_mangen::Man::new(sub).title(format!("ringfence-{name}"))
        }
    };
    page.render(&mut std::io::stdout())
        .context("write the man page")?;
    Ok(ExitCode::SUCCESS)
}

/// The shells whose completion files the packages install; each lands where that shell's
/// Debian package looks for vendor completions (see `packaging/` and `docs/packaging.md`).
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

pub fn run(args: GenerateAssetsArgs) -> anyhow::Result<ExitCode> {
    generate(&args.dir)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `dir/man/ringfence.1`, one `ringfence-<sub>[-<subsub>].1` per visible subcommand, and
/// `dir/completions/{ringfence.bash,_ringfence,ringfence.fish}`. Hidden subcommands (this one,
/// the crash monitor) get neither a page nor a completion: they are not for people.
fn generate(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for out in [&man, &completions] {
        std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    }
    clap_mangen::generate_to(super::Cli::command(), &man)
        .with_context(|| format!("write man pages to {}", man.display()))?;
    for shell in SHELLS {
        let mut command = super::Cli::command();
        clap_complete::generate_to(shell, &mut command, "ringfence", &completions)
            .with_context(|| format!("write {shell} completion to {}", completions.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn writes_man_pages_and_completions_for_every_visible_subcommand() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::generate(dir.path()).expect("generate assets");

        let main_page =
            std::fs::read_to_string(dir.path().join("man/ringfence.1")).expect("main man page");
        assert!(
            main_page.contains(".TH ringfence 1"),
            "not a man page:\n{main_page}"
        );
        let cli = super::super::Cli::command();
        let visible: Vec<_> = cli.get_subcommands().filter(|s| !s.is_hide_set()).collect();
        assert!(
            visible.len() >= 10,
            "expected the whole command set, got {}",
            visible.len()
        );
        for sub in visible {
            let name = sub.get_name();
            // roff escapes '-' as '\-' in the SUBCOMMANDS list.
            let reference = format!("ringfence\\-{name}(1)");
            assert!(
                main_page.contains(&reference),
                "ringfence.1 does not mention {reference}"
            );
            assert!(
                dir.path().join(format!("man/ringfence-{name}.1")).is_file(),
                "no man page for {name}"
            );
        }
        for hidden in ["generate-assets", "crash-monitor"] {
            assert!(
                !main_page.contains(hidden),
                "hidden {hidden} is in ringfence.1"
            );
            assert!(
                !dir.path()
                    .join(format!("man/ringfence-{hidden}.1"))
                    .exists()
            );
        }
        // Nested subcommands get their own pages too.
        assert!(dir.path().join("man/ringfence-engine-test.1").is_file());

        for (file, marker) in [
            ("ringfence.bash", "_ringfence()"),
            ("_ringfence", "#compdef ringfence"),
            ("ringfence.fish", "complete -c ringfence"),
        ] {
            let text = std::fs::read_to_string(dir.path().join("completions").join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(text.contains(marker), "{file} lacks {marker:?}");
            assert!(
                text.contains("rollout"),
                "{file} does not complete subcommands"
            );
        }
    }
}
