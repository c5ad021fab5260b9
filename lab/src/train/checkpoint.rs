//! Checkpoints: parameters and optimiser state in one safetensors file whose header metadata also
//! holds the rest of the training state (epoch, batch cursor, RNG states, estimator state,
//! schedule, history) as JSON under [`META_KEY`]. The file is written to a temporary name and
//! renamed, so the weights and the state they belong to land together or not at all: a kill at
//! any instant leaves either the previous checkpoint or the new one. `<stem>.json` beside it is a
//! readable copy of the same state, written after the rename; loading never trusts it for files
//! that carry their own state. (Checkpoints written before the state moved into the header are
//! read from the JSON, and refused when the weights are newer than the JSON: a kill between the
//! two renames of the old scheme left weights one checkpoint ahead of their state.)
use super::{Adam, ParamStore};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// The header metadata key of a checkpoint's training state (JSON).
pub const META_KEY: &str = "varattn.training_state";

/// Save `params`, `opt` and `meta` as `<stem>.safetensors` (the state in its header) and a
/// readable copy of `meta` as `<stem>.json`.
pub fn save<M: Serialize>(stem: &Path, params: &ParamStore, opt: &Adam, meta: &M) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> =
        params.tensors().into_iter().map(|(k, v)| (format!("param.{k}"), v)).collect();
    tensors.extend(opt.state_tensors()?);
    let st = stem.with_extension("safetensors");
    let dir = st.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let name = st.file_name().with_context(|| format!("{} has no file name", st.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let json = serde_json::to_string_pretty(meta)?;
    let header = HashMap::from([(META_KEY.to_string(), json.clone())]);
    let written = (|| -> Result<()> {
        safetensors::serialize_to_file(&tensors, Some(header), &tmp).with_context(|| format!("writing {}", tmp.display()))?;
        // the mode of every other output (safetensors writes through a private temporary file),
        // and on disk before the rename, as results are
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).with_context(|| format!("setting the mode of {}", tmp.display()))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, &st).with_context(|| format!("renaming {} to {}", tmp.display(), st.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    crate::provenance::write_atomic(&stem.with_extension("json"), json.as_bytes())
}

/// Does a checkpoint exist at `stem`? (A file of the current scheme carries its own state; one
/// of the old scheme needs the JSON beside it.)
pub fn exists(stem: &Path) -> bool {
    let st = stem.with_extension("safetensors");
    st.exists() && (stem.with_extension("json").exists() || matches!(embedded_state(&st), Ok(Some(_))))
}

/// The training state in the header of the safetensors file `st`, if it has one.
pub fn embedded_state(st: &Path) -> Result<Option<String>> {
    let mut f = std::fs::File::open(st).with_context(|| format!("reading {}", st.display()))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).with_context(|| format!("{}: no safetensors header", st.display()))?;
    let n = u64::from_le_bytes(n);
    if n > 100_000_000 {
        bail!("{}: safetensors header of {n} bytes is not plausible", st.display())
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).with_context(|| format!("{}: safetensors header cut off", st.display()))?;
    let header: serde_json::Value = serde_json::from_slice(&header).with_context(|| format!("{}: safetensors header is not JSON", st.display()))?;
    Ok(header.get("__metadata__").and_then(|m| m.get(META_KEY)).and_then(|v| v.as_str()).map(str::to_string))
}

/// Load a checkpoint into `params` and `opt` (shapes and names must match the config) and
/// return its training state.
pub fn load<M: DeserializeOwned>(stem: &Path, params: &ParamStore, opt: &mut Adam, device: &Device) -> Result<M> {
    let st = stem.with_extension("safetensors");
    let js = stem.with_extension("json");
    let text = match embedded_state(&st)? {
        Some(text) => text,
        None => {
            let (t_st, t_js) = (modified(&st)?, modified(&js)?);
            if t_st > t_js {
                bail!(
                    "{} is newer than {}: the run was stopped between writing the weights and their training state (a checkpoint of an older varattn), so they do not belong together; rerun with --fresh",
                    st.display(),
                    js.display()
                )
            }
            std::fs::read_to_string(&js).with_context(|| format!("reading {}", js.display()))?
        }
    };
    let tensors = load_into(&st, params, device)?;
    opt.load_state(&tensors).with_context(|| format!("optimiser state in {}", st.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing the training state of {}", st.display()))
}

fn modified(p: &Path) -> Result<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).with_context(|| format!("reading {}", p.display()))
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
    let mut names: Vec<&String> = param_map.keys().collect();
    names.sort();
    for name in names {
        let finite = param_map[name].to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?.iter().all(|x| x.is_finite());
        if !finite {
            bail!("{}: parameter {name} holds NaN or infinite values (the checkpoint is corrupt); rerun with --fresh", st.display())
        }
    }
    params.load_tensors(&param_map, st)?;
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::AdamConfig;
    use candle_core::DType;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct State {
        step: usize,
    }

    fn store(value: f32) -> (ParamStore, Adam) {
        let mut ps = ParamStore::new(1, 0.1, &Device::Cpu);
        ps.constant("w", &[3], value as f64).unwrap();
        let opt = Adam::new(ps.named_vars(), AdamConfig::default()).unwrap();
        (ps, opt)
    }

    fn weights(ps: &ParamStore) -> Vec<f32> {
        ps.tensors()["w"].to_dtype(DType::F32).unwrap().to_vec1().unwrap()
    }

    /// A kill after the weights' rename and before the readable JSON (the old scheme's torn
    /// checkpoint) cannot pair new weights with the old state: the state travels in the file.
    #[test]
    fn weights_and_state_land_together_even_if_the_json_copy_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("last");
        let (ps, opt) = store(1.0);
        save(&stem, &ps, &opt, &State { step: 100 }).unwrap();
        let stale = std::fs::read(stem.with_extension("json")).unwrap();
        let (ps2, opt2) = store(2.0);
        save(&stem, &ps2, &opt2, &State { step: 200 }).unwrap();
        std::fs::write(stem.with_extension("json"), stale).unwrap(); // as if killed before the JSON
        assert!(embedded_state(&stem.with_extension("safetensors")).unwrap().unwrap().contains("200"));
        let (ps3, mut opt3) = store(0.0);
        let st: State = load(&stem, &ps3, &mut opt3, &Device::Cpu).unwrap();
        assert_eq!(st, State { step: 200 });
        assert_eq!(weights(&ps3), [2.0; 3]);
        // the JSON copy alone is not needed
        std::fs::remove_file(stem.with_extension("json")).unwrap();
        assert!(exists(&stem));
        let st: State = load(&stem, &ps3, &mut opt3, &Device::Cpu).unwrap();
        assert_eq!(st.step, 200);
    }

    /// The training state's floats come back bit for bit (running sums, learning rate, estimator
    /// moments), so a resumed run continues exactly; the file has the mode of every other output.
    #[test]
    fn state_floats_round_trip_exactly_and_the_file_mode_is_0644() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Floats {
            xs: Vec<f64>,
        }
        let mut rng = crate::rng::SeededRng::new(3435);
        let xs: Vec<f64> = (0..2000).map(|_| rng.next_uniform() * 1000.0).collect();
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("last");
        let (ps, opt) = store(1.0);
        save(&stem, &ps, &opt, &Floats { xs: xs.clone() }).unwrap();
        let (ps2, mut opt2) = store(0.0);
        let back: Floats = load(&stem, &ps2, &mut opt2, &Device::Cpu).unwrap();
        let differ = xs.iter().zip(&back.xs).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{differ} of {} floats changed in the round trip", xs.len());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(stem.with_extension("safetensors")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    }

    /// A checkpoint whose weights hold NaN is refused as corrupt (with the way out), not trained on.
    #[test]
    fn non_finite_weights_are_refused_naming_the_parameter() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("last");
        let (ps, opt) = store(f32::NAN);
        save(&stem, &ps, &opt, &State { step: 1 }).unwrap();
        let (ps2, mut opt2) = store(0.0);
        let err = format!("{:#}", load::<State>(&stem, &ps2, &mut opt2, &Device::Cpu).unwrap_err());
        assert!(err.contains("last.safetensors") && err.contains("parameter w") && err.contains("--fresh"), "{err}");
        assert!(!err.contains("learning rate"), "{err}");
    }

    /// Checkpoints of the old scheme (no state in the header) still load from their JSON, and a
    /// torn one (weights newer than the JSON) is refused with the way out.
    #[test]
    fn old_checkpoints_load_from_their_json_and_torn_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("last");
        let (ps, opt) = store(3.0);
        let mut tensors: HashMap<String, Tensor> = ps.tensors().into_iter().map(|(k, v)| (format!("param.{k}"), v)).collect();
        tensors.extend(opt.state_tensors().unwrap());
        let st = stem.with_extension("safetensors");
        candle_core::safetensors::save(&tensors, &st).unwrap();
        assert!(!exists(&stem), "weights without any state are no checkpoint");
        std::fs::write(stem.with_extension("json"), r#"{"step": 7}"#).unwrap();
        assert!(exists(&stem) && embedded_state(&st).unwrap().is_none());
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&st).unwrap().set_modified(past).unwrap();
        let (ps2, mut opt2) = store(0.0);
        let got: State = load(&stem, &ps2, &mut opt2, &Device::Cpu).unwrap();
        assert_eq!(got.step, 7);
        assert_eq!(weights(&ps2), [3.0; 3]);
        // now the weights are newer than their state
        std::fs::File::options().write(true).open(stem.with_extension("json")).unwrap().set_modified(past - std::time::Duration::from_secs(60)).unwrap();
        let err = format!("{:#}", load::<State>(&stem, &ps2, &mut opt2, &Device::Cpu).unwrap_err());
        assert!(err.contains("last.safetensors is newer than") && err.contains("--fresh"), "{err}");
    }
}
