//! `ringfence generate-assets DIR` (hidden): writes the man pages and shell completions that the
//! packages ship, from the same clap definition that parses the command line, so they can never
//! describe flags the binary does not have. `scripts/package.sh` runs it before `cargo deb`.

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
