//! Grid features of images from a DINOv2 vision transformer
//! ([`candle_transformers::models::dinov2`]), the regions x̃_1..x̃_S of the VQA-v2 model.
//!
//! * Preprocessing: decode (JPEG or PNG), convert to RGB, resize to `image_size`² (bilinear),
//!   x ← (x/255 − μ)/σ per channel with the ImageNet μ = (0.485, 0.456, 0.406),
//!   σ = (0.229, 0.224, 0.225), as DINOv2 was trained.
//! * Features: the patch tokens of the last block after the final LayerNorm (the class token is
//!   dropped), one per 14×14 patch: a (image_size/14)² grid of `embed_dim`-vectors, optionally
//!   average-pooled over `pool`×`pool` patches, `[B, S, C]` with S = (image_size/14/pool)².
//!   DINOv2 interpolates its 37×37 position embeddings to the grid (nearest neighbour in candle).
//!   Images go through the ViT one at a time (candle-transformers 0.11.1's DINOv2 handles a
//!   batch of one only).
//! * Weights: pretrained (a safetensors file of a Hub model repository, e.g. ViT-S/14: depth 12,
//!   dim 384, 6 heads), or drawn through [`SeededRng`] for tests: every tensor from its own stream
//!   (a hash of its name), candle's init hints (Kaiming normal for weights, uniform biases,
//!   LayerNorm 1/0), except layer scales γ = 1 and class token / position embeddings N(0, 0.02²)
//!   (candle's default hint for those is 0, which would make every block the identity).
use crate::rng::SeededRng;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::Init;
#[cfg(feature = "dinov2")]
use candle_nn::VarBuilder;
#[cfg(feature = "dinov2")]
use candle_transformers::models::dinov2::DinoVisionTransformer;
use serde::{Deserialize, Serialize};

/// DINOv2's patch size.
pub const PATCH: usize = 14;
/// ImageNet channel means and standard deviations.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A safetensors file in a Hub model repository.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PretrainedWeights {
    /// Model repository `owner/name`.
    pub repo: String,
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Path of the safetensors file in the repository.
    pub file: String,
}

fn default_revision() -> String {
    "main".into()
}

/// `[data.vqa_v2.backbone]`: a DINOv2 ViT and how its grid is read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// `dinov2` (the only kind).
    pub kind: String,
    pub depth: usize,
    pub embed_dim: usize,
    pub heads: usize,
    /// Input side in pixels, a multiple of 14.
    pub image_size: usize,
    /// Average-pool the patch grid over pool×pool patches (1 = none).
    #[serde(default = "one")]
    pub pool: usize,
    /// Pretrained weights; none: random weights drawn from `init_seed` (tests, smoke runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PretrainedWeights>,
    #[serde(default)]
    pub init_seed: u64,
}

fn one() -> usize {
    1
}

impl BackboneConfig {
    /// Checks the sizes; the error names the offending key.
    pub fn validate(&self) -> Result<()> {
        if self.kind != "dinov2" {
            bail!("backbone.kind = `{}`: unknown (known: dinov2)", self.kind)
        }
        if self.image_size == 0 || self.image_size % PATCH != 0 {
            bail!("backbone.image_size = {} must be a positive multiple of the patch size {PATCH}", self.image_size)
        }
        let g = self.image_size / PATCH;
        if self.pool == 0 || g % self.pool != 0 {
            bail!("backbone.pool = {} must divide the patch grid side {g} (image_size {} / {PATCH})", self.pool, self.image_size)
        }
        if self.heads == 0 || self.embed_dim % self.heads != 0 {
            bail!("backbone.embed_dim = {} must be a multiple of backbone.heads = {}", self.embed_dim, self.heads)
        }
        Ok(())
    }

    /// Side of the (pooled) region grid.
    pub fn grid_side(&self) -> usize {
        self.image_size / PATCH / self.pool
    }

    /// Regions per image S.
    pub fn regions(&self) -> usize {
        self.grid_side() * self.grid_side()
    }

    /// A short id of everything that determines the features (the config as JSON, hashed), so
    /// features of another backbone are never reused.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        crate::provenance::sha256_hex(json.as_bytes())[..16].to_string()
    }
}

/// FNV-1a of a parameter name: its random stream.
#[cfg_attr(not(feature = "dinov2"), allow(dead_code))]
fn name_stream(name: &str) -> u64 {
    name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// A VarBuilder backend whose tensors are drawn through [`SeededRng`] (see the module doc).
#[cfg_attr(not(feature = "dinov2"), allow(dead_code))]
struct SeededInit {
    seed: u64,
}

impl SimpleBackend for SeededInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut rng = SeededRng::new(self.seed).fork(name_stream(name));
        let h = if name.ends_with(".gamma") {
            Init::Const(1.0)
        } else if name == "cls_token" || name == "pos_embed" {
            Init::Randn { mean: 0.0, stdev: 0.02 }
        } else {
            h
        };
        let t = match h {
            Init::Const(v) => (Tensor::ones(&s, DType::F32, dev)? * v)?,
            Init::Randn { mean, stdev } => ((rng.normal(&s, dev)? * stdev)? + mean)?,
            Init::Uniform { lo, up } => ((rng.uniform(&s, dev)? * (up - lo))? + lo)?,
            Init::Kaiming { dist, fan, non_linearity } => {
                let std = non_linearity.gain() / (fan.for_shape(&s) as f64).sqrt();
                match dist {
                    candle_nn::init::NormalOrUniform::Normal => (rng.normal(&s, dev)? * std)?,
                    candle_nn::init::NormalOrUniform::Uniform => rng.uniform(&s, dev)?.affine(2.0 * 3f64.sqrt() * std, -(3f64.sqrt() * std))?,
                }
            }
        };
        t.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("seeded backbone init: no shape for `{name}`")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// A DINOv2 trunk that maps images to grid features.
pub struct Backbone {
    pub cfg: BackboneConfig,
    #[cfg(feature = "dinov2")]
    vit: DinoVisionTransformer,
    device: Device,
}

impl Backbone {
    /// Random weights from `cfg.init_seed`, or the pretrained file at `weights` (a local path,
    /// resolved by the caller through the Hub cache) when the config names one.
    /// Needs the lab's `dinov2` feature (on by default); without it this is an error.
    pub fn new(cfg: &BackboneConfig, weights: Option<&std::path::Path>, device: &Device) -> Result<Self> {
        cfg.validate()?;
        #[cfg(not(feature = "dinov2"))]
        {
            let _ = (weights, device);
            bail!("the DINOv2 backbone needs varattn-lab's `dinov2` feature (a default feature): this build was made without it")
        }
        #[cfg(feature = "dinov2")]
        {
        let vb = match (&cfg.weights, weights) {
            (Some(w), Some(path)) => {
                // SAFETY: the file is memory-mapped read-only and not modified while mapped.
                unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
                    .with_context(|| format!("loading backbone weights {} ({} {})", path.display(), w.repo, w.file))?
            }
            (Some(w), None) => bail!("backbone weights {} of {} were not resolved", w.file, w.repo),
            (None, _) => VarBuilder::from_backend(Box::new(SeededInit { seed: cfg.init_seed }), DType::F32, device.clone()),
        };
        let vit = DinoVisionTransformer::new(vb, cfg.depth, cfg.embed_dim, cfg.heads)
            .with_context(|| format!("building DINOv2 (depth {}, dim {}, heads {})", cfg.depth, cfg.embed_dim, cfg.heads))?;
        Ok(Self { cfg: cfg.clone(), vit, device: device.clone() })
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Grid features `[B, S, C]` of preprocessed images `[B, 3, H, W]`.
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        #[cfg(not(feature = "dinov2"))]
        bail!("the DINOv2 backbone needs varattn-lab's `dinov2` feature ({} images not encoded)", images.dim(0)?);
        #[cfg(feature = "dinov2")]
        self.vit_features(images)
    }

    #[cfg(feature = "dinov2")]
    fn vit_features(&self, images: &Tensor) -> Result<Tensor> {
        let last = self.cfg.depth.checked_sub(1).context("backbone.depth must be at least 1")?;
        // [1, 1, N, C] per image: the last block's patch tokens after the final norm. One image
        // at a time: candle-transformers 0.11.1's DINOv2 concatenates its [1, 1, C] class token
        // with the [B, N, C] patch tokens without broadcasting, which fails for B > 1.
        let per_image = (0..images.dim(0)?)
            .map(|i| self.vit.get_intermediate_layers(&images.narrow(0, i, 1)?, &[last], false, false, true)?.squeeze(0))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let x = Tensor::cat(&per_image, 0)?;
        let (b, n, c) = x.dims3()?;
        let g = self.cfg.image_size / PATCH;
        if n != g * g {
            bail!("backbone returned {n} patch tokens, expected {}", g * g)
        }
        if self.cfg.pool == 1 {
            return Ok(x.contiguous()?);
        }
        let grid = x.transpose(1, 2)?.reshape((b, c, g, g))?.avg_pool2d(self.cfg.pool)?;
        Ok(grid.flatten_from(2)?.transpose(1, 2)?.contiguous()?)
    }

    /// [`Backbone::features`] of encoded images (JPEG/PNG bytes), decoded and preprocessed.
    pub fn features_of_encoded(&self, images: &[&[u8]]) -> Result<Tensor> {
        let s = self.cfg.image_size;
        let mut pixels = Vec::with_capacity(images.len() * 3 * s * s);
        for bytes in images {
            pixels.extend(preprocess(bytes, s)?);
        }
        let x = Tensor::from_vec(pixels, (images.len(), 3, s, s), &self.device)?;
        self.features(&x)
    }
}

/// Decodes `bytes` (JPEG or PNG) and returns the normalised `[3, size, size]` pixels, CHW.
pub fn preprocess(bytes: &[u8], size: usize) -> Result<Vec<f32>> {
    let img = image::load_from_memory(bytes).context("decoding the image")?;
    let rgb = img.resize_exact(size as u32, size as u32, image::imageops::FilterType::Triangle).to_rgb8();
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (p[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny() -> BackboneConfig {
        BackboneConfig { kind: "dinov2".into(), depth: 1, embed_dim: 16, heads: 2, image_size: 56, pool: 1, weights: None, init_seed: 7 }
    }

    fn png(color: [u8; 3]) -> Vec<u8> {
        let img = image::RgbImage::from_fn(20, 12, |x, _| if x < 10 { image::Rgb(color) } else { image::Rgb([0, 0, 0]) });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[cfg(feature = "dinov2")]
    #[test]
    fn random_backbone_is_reproducible_and_gives_a_grid() {
        let dev = Device::Cpu;
        let cfg = tiny();
        let a = Backbone::new(&cfg, None, &dev).unwrap();
        let b = Backbone::new(&cfg, None, &dev).unwrap();
        let (r, g) = (png([255, 0, 0]), png([0, 255, 0]));
        let fa = a.features_of_encoded(&[&r, &g]).unwrap();
        assert_eq!(fa.dims(), &[2, 16, 16]);
        let fb = b.features_of_encoded(&[&r, &g]).unwrap();
        assert_eq!(fa.to_vec3::<f32>().unwrap(), fb.to_vec3::<f32>().unwrap());
        let diff = (fa.get(0).unwrap() - fa.get(1).unwrap()).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff > 1e-3, "two different images gave the same features");
        let pooled = Backbone::new(&BackboneConfig { pool: 2, ..cfg.clone() }, None, &dev).unwrap();
        assert_eq!(pooled.features_of_encoded(&[&r]).unwrap().dims(), &[1, 4, 16]);
        assert_ne!(cfg.fingerprint(), BackboneConfig { init_seed: 8, ..cfg.clone() }.fingerprint());
    }

    #[cfg(not(feature = "dinov2"))]
    #[test]
    fn without_the_dinov2_feature_the_backbone_is_an_error_naming_it() {
        let err = Backbone::new(&tiny(), None, &Device::Cpu).err().expect("no backbone without dinov2").to_string();
        assert!(err.contains("`dinov2` feature"), "{err}");
    }

    #[test]
    fn preprocessing_normalises_with_imagenet_statistics() {
        let px = preprocess(&png([255, 255, 255]), 14).unwrap();
        assert_eq!(px.len(), 3 * 14 * 14);
        // the top-left pixel is white: (1 - mean) / std
        for c in 0..3 {
            assert!((px[c * 196] - (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]).abs() < 1e-5);
        }
        assert!(preprocess(b"not an image", 14).is_err());
        let bad = BackboneConfig { image_size: 50, ..tiny() };
        assert!(bad.validate().unwrap_err().to_string().contains("image_size"));
    }
}
