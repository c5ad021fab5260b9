//! The `varattn` command line.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use varattn::demo::{self, DemoConfig};
use varattn::eval::bleu::{corpus_bleu, multi_bleu, BleuOptions, Tokenizer};
use varattn::io::{git_revision, write_atomic};

#[derive(Parser)]
#[command(name = "varattn", version, about = "Latent-alignment attention: training, evaluation and the papers' tables")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the synthetic reversal model with every objective and print a comparison table.
    Demo {
        /// Training steps per objective.
        #[arg(long, default_value_t = 150)]
        steps: usize,
        #[arg(long, default_value_t = 3435)]
        seed: u64,
        /// Directory for table.md, table.csv and config.json.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Corpus BLEU of a hypothesis file against one or more reference files (one sentence a
    /// line), printed as sacrebleu prints it.
    Bleu {
        hyp: PathBuf,
        #[arg(required = true)]
        refs: Vec<PathBuf>,
        /// Tokenizer: 13a (sacrebleu's default) or none.
        #[arg(long, default_value = "13a")]
        tokenize: String,
        #[arg(long)]
        lowercase: bool,
        /// The papers' variant: multi-bleu.perl on already tokenised text.
        #[arg(long)]
        multi_bleu: bool,
    },
    /// Data sets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Fetch, extract, split and verify a data set; prints one line per split with its size.
    Prepare {
        /// Data set name (known: ding-de-en).
        name: String,
        /// Cache directory (default: $VARATTN_CACHE or ~/.cache/varattn).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
}

fn cache_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("VARATTN_CACHE").map(PathBuf::from))
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            home.join(".cache").join("varattn")
        })
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::to_string).collect())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { steps, seed, out } => {
            let cfg = DemoConfig { steps, seed, ..Default::default() };
            println!("synthetic reversal task, {} steps per objective, seed {seed}", cfg.steps);
            let rows = demo::run_all(&cfg, &candle_core::Device::Cpu, |r| {
                println!("  {:<12} PPL {:>7.3}  H(p) {:.3}  align {:.3}  {:.1}s", r.objective, r.ppl, r.prior_entropy, r.alignment_accuracy, r.train_seconds);
            })?;
            let md = demo::markdown(&rows);
            println!("\n{md}");
            if let Some(dir) = out {
                write_atomic(&dir.join("table.md"), md.as_bytes())?;
                write_atomic(&dir.join("table.csv"), demo::csv(&rows)?.as_bytes())?;
                let meta = serde_json::json!({
                    "command": std::env::args().collect::<Vec<_>>().join(" "),
                    "config": cfg,
                    "git_revision": git_revision(),
                    "device": "cpu",
                });
                write_atomic(&dir.join("config.json"), serde_json::to_string_pretty(&meta)?.as_bytes())?;
                println!("wrote {}", dir.display());
            }
        }
        Command::Bleu { hyp, refs, tokenize, lowercase, multi_bleu: mb } => {
            let hyps = read_lines(&hyp)?;
            let refs = refs.iter().map(|r| read_lines(r)).collect::<Result<Vec<_>>>()?;
            if mb {
                println!("{}", multi_bleu(&hyps, &refs, lowercase).multi_bleu_line());
            } else {
                let tokenizer: Tokenizer = tokenize.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
                let score = corpus_bleu(&hyps, &refs, &BleuOptions { tokenizer, lowercase })
                    .map_err(|e| anyhow::anyhow!("{}: {e}", hyp.display()))?;
                println!("{score}");
            }
        }
        Command::Data { command: DataCommand::Prepare { name, cache } } => {
            let dir = cache_dir(cache);
            match name.as_str() {
                "ding-de-en" => {
                    varattn::data::ding::prepare_ding(&dir)?;
                }
                other => bail!("unknown data set `{other}`; known: ding-de-en"),
            }
        }
    }
    Ok(())
}
