//! `cargo xtask docs`: the man page and shell completions, generated from
//! tcptrace's clap definitions so they never drift from `--help`.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

// The CLI's clap types alone (cli.rs holds nothing else), so generating the
// docs does not need the kernel programs built.
#[path = "../../tcptrace/src/cli.rs"]
pub mod cli;

/// Writes tcptrace.1 and the bash, zsh and fish completions into `out`;
/// returns the files written.
pub fn generate(out: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let mut written = Vec::new();
    let command = cli::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page).context("render the man page")?;
    let man = out.join("tcptrace.1");
    fs::write(&man, page).with_context(|| format!("write {}", man.display()))?;
    written.push(man);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut command = command.clone();
        let path = clap_complete::generate_to(shell, &mut command, "tcptrace", out)
            .with_context(|| format!("write {shell} completions"))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_and_completions_name_every_option() {
        let out = std::env::temp_dir().join(format!("tcptrace-docs-{}", std::process::id()));
        let files = generate(&out).expect("generate");
        let text = |name: &str| fs::read_to_string(out.join(name)).expect(name);
        let man = text("tcptrace.1");
        for option in cli::Cli::command().get_arguments().filter_map(|a| a.get_long()) {
            // roff escapes dashes: \-\-events
            assert!(man.contains(&format!("\\-\\-{}", option.replace('-', "\\-"))), "man page lacks --{option}");
            for completion in ["tcptrace.bash", "_tcptrace", "tcptrace.fish"] {
                assert!(text(completion).contains(option), "{completion} lacks {option}");
            }
        }
        assert_eq!(files.len(), 4);
        let _ = fs::remove_dir_all(out);
    }
}
