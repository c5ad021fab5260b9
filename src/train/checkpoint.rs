//! Checkpoints: parameters and optimiser state in one safetensors file, the rest of the training
//! state (epoch, batch cursor, RNG states, estimator state, schedule, history) in JSON beside
//! it. Both are written to temporary files and renamed, JSON last, so a checkpoint is either
//! complete or absent.
use super::{Adam, ParamStore};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Save `params`, `opt` and `meta` as `<stem>.safetensors` + `<stem>.json`.
pub fn save<M: Serialize>(stem: &Path, params: &ParamStore, opt: &Adam, meta: &M) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> =
        params.tensors().into_iter().map(|(k, v)| (format!("param.{k}"), v)).collect();
    tensors.extend(opt.state_tensors()?);
    let st = stem.with_extension("safetensors");
    let dir = st.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", st.file_name().unwrap().to_string_lossy()));
    candle_core::safetensors::save(&tensors, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &st).with_context(|| format!("renaming to {}", st.display()))?;
    crate::io::write_atomic(&stem.with_extension("json"), serde_json::to_string_pretty(meta)?.as_bytes())
}

/// Does a complete checkpoint exist at `stem`?
pub fn exists(stem: &Path) -> bool {
    stem.with_extension("json").exists() && stem.with_extension("safetensors").exists()
}

/// Load a checkpoint into `params` and `opt` (shapes and names must match the config) and
/// return its metadata.
pub fn load<M: DeserializeOwned>(stem: &Path, params: &ParamStore, opt: &mut Adam, device: &Device) -> Result<M> {
    let st = stem.with_extension("safetensors");
    let js = stem.with_extension("json");
    let tensors = load_into(&st, params, device)?;
    opt.load_state(&tensors).with_context(|| format!("optimiser state in {}", st.display()))?;
    let text = std::fs::read_to_string(&js).with_context(|| format!("reading {}", js.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", js.display()))
}

/// Load only the parameters (for evaluation).
pub fn load_params(stem: &Path, params: &ParamStore, device: &Device) -> Result<()> {
    load_into(&stem.with_extension("safetensors"), params, device).map(|_| ())
}

/// Read a safetensors checkpoint, load its `param.*` tensors into `params`, return all tensors.
fn load_into(st: &Path, params: &ParamStore, device: &Device) -> Result<HashMap<String, Tensor>> {
    let tensors = candle_core::safetensors::load(st, device).with_context(|| format!("reading {}", st.display()))?;
    let param_map: HashMap<String, Tensor> = tensors
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|n| (n.to_string(), v.clone())))
        .collect();
    params.load_tensors(&param_map, st)?;
    Ok(tensors)
}
