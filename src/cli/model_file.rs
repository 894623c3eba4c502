//! `--model-file FILE`: a TOML file of model settings, keys as the command's model flags
//! without dashes (`components = 2`, `prior_sigma = "halfnormal(2)"`, `w = [1, 2, 0.5]`,
//! `obs_noise = true`). The file's settings become command-line flags, appended after the
//! user's own, for every key the user did not give on the command line: flags on the command
//! line always win, and every value goes through the same parser as the flag, so the file
//! accepts exactly what the flags accept.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// The keys `gpsamp em` takes from a model file (its model and prior flags).
const EM_KEYS: &[&str] = &[
    "model",
    "states",
    "emission",
    "concentration",
    "stickiness",
    "coef_sd",
    "var_floor",
    "init",
    "restarts",
    "max_iters",
    "tol",
];

/// The keys a model file may hold for subcommand `cmd` (a command with a `model_file`
/// argument).
fn allowed_keys(name: &str, cmd: &Command) -> Vec<String> {
    if name == "em" {
        return EM_KEYS.iter().map(|s| s.to_string()).collect();
    }
    let model = <super::args::ModelArgs as clap::Args>::augment_args(Command::new("model"));
    model
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id != "model_file" && cmd.get_arguments().any(|a| a.get_id() == id))
        .collect()
}

/// The flags a file's key and value stand for (none for `false`).
fn flag_args(path: &Path, key: &str, v: &toml::Value) -> anyhow::Result<Vec<String>> {
    let flag = format!("--{}", key.replace('_', "-"));
    let scalar = |v: &toml::Value| -> anyhow::Result<String> {
        Ok(match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "{}: key `{key}`: a {} is not a value of {flag}",
                path.display(),
                other.type_str()
            ),
        })
    };
    Ok(match v {
        toml::Value::Boolean(true) => vec![flag],
        toml::Value::Boolean(false) => Vec::new(),
        toml::Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(scalar).collect::<anyhow::Result<_>>()?;
            vec![format!("{flag}={}", parts.join(","))]
        }
        other => vec![format!("{flag}={}", scalar(other)?)],
    })
}

/// Reads `path` into (key, flags) pairs, refusing keys the command does not take.
fn file_flags(path: &Path, allowed: &[String]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--model-file: reading {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (k, v) in &table {
        if !allowed.iter().any(|a| a == k) {
            bail!(
                "{}: unknown key `{k}`; a model file takes these keys (the flags without dashes): {}",
                path.display(),
                allowed.join(", ")
            );
        }
        out.push((k.clone(), flag_args(path, k, v)?));
    }
    Ok(out)
}

/// Whether the user gave `id` (on the command line or through the environment).
fn explicit(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// `argv` with the settings of the subcommand's `--model-file` appended for every key not
/// given on the command line, re-parsed with `cmd`; `None` when there is no model file.
pub fn apply(
    cmd: &Command,
    matches: &ArgMatches,
    argv: &[OsString],
) -> anyhow::Result<Option<ArgMatches>> {
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(None);
    };
    let Ok(Some(path)) = sub.try_get_one::<PathBuf>("model_file") else {
        return Ok(None);
    };
    let sub_cmd = cmd
        .find_subcommand(name)
        .context("a subcommand clap just parsed")?;
    let allowed = allowed_keys(name, sub_cmd);
    let flags = file_flags(path, &allowed)?;
    let mut full: Vec<OsString> = argv.to_vec();
    for (key, args) in &flags {
        if !explicit(sub, key) {
            full.extend(args.iter().map(OsString::from));
        }
    }
    match cmd.clone().try_get_matches_from(&full) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            // Name the key whose value clap refused: try each alone.
            for (key, args) in &flags {
                if explicit(sub, key) {
                    continue;
                }
                let mut one = argv.to_vec();
                one.extend(args.iter().map(OsString::from));
                if let Err(e1) = cmd.clone().try_get_matches_from(&one) {
                    bail!(
                        "{}: key `{key}`: {}",
                        path.display(),
                        first_line(&e1.to_string())
                    );
                }
            }
            bail!("{}: {}", path.display(), first_line(&e.to_string()))
        }
    }
}

/// A model file's settings for a bare [`super::args::ModelArgs`] (as `sbc
/// --fit-model-file` reads it): every key of the file, parsed as flags.
pub fn model_args_from_file(path: &Path) -> anyhow::Result<super::args::ModelArgs> {
    #[derive(clap::Parser)]
    struct ModelOnly {
        #[command(flatten)]
        model: super::args::ModelArgs,
    }
    let cmd = <ModelOnly as clap::CommandFactory>::command();
    let allowed = allowed_keys("model", &cmd);
    let mut argv: Vec<OsString> = vec!["model".into(), "--model-file".into(), path.into()];
    for (_, args) in file_flags(path, &allowed)? {
        argv.extend(args.into_iter().map(OsString::from));
    }
    let m = cmd
        .try_get_matches_from(&argv)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), first_line(&e.to_string())))?;
    let mut a = <ModelOnly as clap::FromArgMatches>::from_arg_matches(&m)?.model;
    a.resolve()?;
    Ok(a)
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}
