//! The on-disk cache of backbone grid features, computed once per image id:
//!
//! ```text
//! <cache>/vqa-v2/features/<backbone fingerprint>/
//!     manifest.json            the backbone config, regions S, dim C, dtype (written first)
//!     index.json               shard files, image id -> (shard, row) (rewritten after each shard)
//!     shard-00000.safetensors  features [n, S, C] (f16), image_ids [n] (i64)
//! ```
//!
//! The folder is named by [`BackboneConfig::fingerprint`], and the manifest is compared with the
//! backbone asked for, so features of another backbone are never reused. Images missing from the
//! index are computed in shards of `shard_size` (sorted by image id); each shard file is written
//! to a temporary name and renamed, and only then entered in the index, so an interrupted run
//! leaves whole shards that a rerun skips. An image that cannot be read or decoded is an error
//! naming its image id and a question that refers to it.
use crate::provenance::write_atomic;
use super::backbone::{Backbone, BackboneConfig};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where one image's encoded bytes come from.
#[derive(Debug, Clone)]
pub enum ImageSource<'a> {
    /// The parquet row's `image` column.
    Bytes(&'a [u8]),
    /// A file (e.g. COCO train2014 JPEGs in `data.vqa_v2.image_dir`).
    File(PathBuf),
    /// Neither: an error if the features are not cached.
    Missing,
}

/// An image the features are needed for, with a question that refers to it (for messages).
#[derive(Debug, Clone)]
pub struct PendingImage<'a> {
    pub image_id: i64,
    pub question_id: i64,
    pub source: ImageSource<'a>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureManifest {
    pub backbone: BackboneConfig,
    pub fingerprint: String,
    pub regions: usize,
    pub dim: usize,
    pub dtype: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FeatureIndex {
    /// Shard file names, in creation order.
    pub shards: Vec<String>,
    /// image id -> (shard, row).
    pub images: BTreeMap<i64, (usize, usize)>,
}

/// Features of the images asked for, in memory.
pub struct FeatureStore {
    pub dir: PathBuf,
    pub manifest: FeatureManifest,
    index: FeatureIndex,
    shards: HashMap<usize, Tensor>,
    /// Images computed by this call / found in the cache.
    pub computed: usize,
    pub reused: usize,
}

/// The cache folder of a backbone.
pub fn feature_dir(cache_dir: &Path, cfg: &BackboneConfig) -> PathBuf {
    cache_dir.join("vqa-v2").join("features").join(cfg.fingerprint())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: corrupt feature cache file; delete its folder to recompute", path.display()))
}

fn encoded<'a>(img: &'a PendingImage<'a>) -> Result<std::borrow::Cow<'a, [u8]>> {
    match &img.source {
        ImageSource::Bytes(b) => Ok(std::borrow::Cow::Borrowed(b)),
        ImageSource::File(p) => Ok(std::borrow::Cow::Owned(
            std::fs::read(p).with_context(|| format!("question {}: image {}: reading {}", img.question_id, img.image_id, p.display()))?,
        )),
        ImageSource::Missing => bail!(
            "question {}: image {} has no image bytes in the parquet rows and no file (set data.vqa_v2.image_dir to the COCO images)",
            img.question_id,
            img.image_id
        ),
    }
}

/// Features `[n, S, C]` of a chunk of images, `batch` at a time.
fn compute(backbone: &Backbone, chunk: &[&PendingImage], batch: usize, bar: &indicatif::ProgressBar) -> Result<Tensor> {
    let mut parts = Vec::new();
    for b in chunk.chunks(batch.max(1)) {
        let bytes: Vec<std::borrow::Cow<[u8]>> = b.iter().map(|i| encoded(i)).collect::<Result<_>>()?;
        let s = backbone.cfg.image_size;
        let mut pixels = Vec::with_capacity(b.len() * 3 * s * s);
        for (img, raw) in b.iter().zip(&bytes) {
            let px = super::backbone::preprocess(raw, s)
                .with_context(|| format!("question {}: image {} cannot be decoded as JPEG/PNG", img.question_id, img.image_id))?;
            pixels.extend(px);
        }
        let x = Tensor::from_vec(pixels, (b.len(), 3, s, s), backbone.device())?;
        parts.push(backbone.features(&x)?.to_dtype(DType::F16)?.to_device(&Device::Cpu)?);
        bar.inc(b.len() as u64);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

impl FeatureStore {
    /// Opens the cache of `backbone` under `cache_dir`, computes the features of the `images`
    /// it lacks (shards of `shard_size`, `batch` images per forward pass) and loads the shards
    /// holding `images`.
    pub fn ensure(cache_dir: &Path, backbone: &Backbone, images: &[PendingImage], shard_size: usize, batch: usize, progress: bool) -> Result<Self> {
        let cfg = &backbone.cfg;
        let dir = feature_dir(cache_dir, cfg);
        let manifest_path = dir.join("manifest.json");
        let (s, c) = (cfg.regions(), cfg.embed_dim);
        let manifest = FeatureManifest { backbone: cfg.clone(), fingerprint: cfg.fingerprint(), regions: s, dim: c, dtype: "f16".into() };
        if manifest_path.is_file() {
            let found: FeatureManifest = read_json(&manifest_path)?;
            if found != manifest {
                bail!("{}: the cached features were made by another backbone ({:?}); delete {} to recompute", manifest_path.display(), found.backbone, dir.display())
            }
        } else {
            write_atomic(&manifest_path, serde_json::to_string_pretty(&manifest)?.as_bytes())?;
        }
        let index_path = dir.join("index.json");
        let mut index: FeatureIndex = if index_path.is_file() { read_json(&index_path)? } else { FeatureIndex::default() };
        // one entry per missing image id, sorted
        let mut missing: BTreeMap<i64, &PendingImage> = BTreeMap::new();
        for img in images {
            if !index.images.contains_key(&img.image_id) {
                missing.entry(img.image_id).or_insert(img);
            }
        }
        let wanted: std::collections::BTreeSet<i64> = images.iter().map(|i| i.image_id).collect();
        let computed = missing.len();
        let reused = wanted.len() - computed;
        if !missing.is_empty() {
            let bar = if progress {
                let b = indicatif::ProgressBar::new(missing.len() as u64);
                b.set_style(
                    indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} images ({per_sec}, {eta})")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_message("backbone features");
                b
            } else {
                indicatif::ProgressBar::hidden()
            };
            let todo: Vec<&PendingImage> = missing.into_values().collect();
            for chunk in todo.chunks(shard_size.max(1)) {
                let feats = compute(backbone, chunk, batch, &bar)?;
                let k = index.shards.len();
                let name = format!("shard-{k:05}.safetensors");
                let ids: Vec<i64> = chunk.iter().map(|i| i.image_id).collect();
                let tensors = HashMap::from([
                    ("features".to_string(), feats),
                    ("image_ids".to_string(), Tensor::from_vec(ids.clone(), ids.len(), &Device::Cpu)?),
                ]);
                let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
                candle_core::safetensors::save(&tensors, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
                std::fs::rename(&tmp, dir.join(&name)).with_context(|| format!("renaming {} into place", tmp.display()))?;
                index.shards.push(name);
                for (row, id) in ids.into_iter().enumerate() {
                    index.images.insert(id, (k, row));
                }
                write_atomic(&index_path, serde_json::to_string(&index)?.as_bytes())?;
            }
            bar.finish_and_clear();
        }
        let mut store = Self { dir, manifest, index, shards: HashMap::new(), computed, reused };
        for id in wanted {
            let (k, _) = store.index.images[&id];
            if let std::collections::hash_map::Entry::Vacant(e) = store.shards.entry(k) {
                let path = store.dir.join(&store.index.shards[k]);
                let mut t = candle_core::safetensors::load(&path, &Device::Cpu)
                    .with_context(|| format!("{}: unreadable feature shard; delete {} to recompute", path.display(), store.dir.display()))?;
                let f = t.remove("features").with_context(|| format!("{}: no `features` tensor", path.display()))?;
                if f.dims().get(1..) != Some(&[s, c][..]) {
                    bail!("{}: features of shape {:?}, expected [n, {s}, {c}]; delete {} to recompute", path.display(), f.dims(), store.dir.display())
                }
                e.insert(f);
            }
        }
        Ok(store)
    }

    /// The cache's index (shards and rows).
    pub fn index(&self) -> &FeatureIndex {
        &self.index
    }

    /// Features `[B, S, C]` (f32) of `image_ids`, on `device`.
    pub fn gather(&self, image_ids: &[i64], device: &Device) -> Result<Tensor> {
        let rows = image_ids
            .iter()
            .map(|id| {
                let (k, r) = self.index.images.get(id).with_context(|| format!("image {id} has no cached features"))?;
                let shard = self.shards.get(k).with_context(|| format!("feature shard {k} not loaded (image {id})"))?;
                Ok(shard.get(*r)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&rows, 0)?.to_dtype(DType::F32)?.to_device(device)?)
    }
}
