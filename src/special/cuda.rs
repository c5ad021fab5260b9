//! CUDA forward passes of the custom ops in [`super::ops`] (compiled only with the `cuda`
//! feature). The kernels (src/special/cuda/kernels.cu) are compiled to PTX by build.rs and loaded
//! once per device through candle's custom-module cache. Their math (special.cuh) is a port of
//! [`super::scalar`], evaluated in f64 for f32 and f64 storage alike, so the GPU computes the
//! same series and expansions as the CPU.
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, Layout, Result};

/// The PTX of src/special/cuda/kernels.cu.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/varattn_kernels.ptx"));
/// Name under which candle caches the loaded module.
const MODULE: &str = "varattn_special";

/// Elementwise op codes, as `VA_OP_*` in special.cuh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum SpecialOp {
    Lgamma = 0,
    Digamma = 1,
    Trigamma = 2,
    Tetragamma = 3,
    Softplus = 4,
    Log1p = 5,
}

/// `dims ++ strides` on the device for a non-contiguous layout; `None` when the layout is
/// contiguous (the kernel then reads element i at offset i from the layout's start).
fn layout_info(dev: &CudaDevice, layout: &Layout) -> Result<Option<CudaSlice<usize>>> {
    if layout.is_contiguous() {
        return Ok(None);
    }
    let info: Vec<usize> = layout.dims().iter().chain(layout.stride()).copied().collect();
    Ok(Some(dev.clone_htod(&info)?))
}

/// Threads per block. The kernels loop over a grid stride, and 256 threads leave room for any
/// register count the driver's JIT may choose (the gamma kernel uses 64 registers per thread with
/// ptxas 13.0, exactly the limit at 1024 threads per block).
const BLOCK: u32 = 256;

fn launch_config(n: usize) -> Result<LaunchConfig> {
    if n == 0 || n > u32::MAX as usize {
        candle_core::bail!("varattn CUDA kernels take 1 to {} elements, got {n}", u32::MAX)
    }
    let blocks = (n as u32).div_ceil(BLOCK).min(65_535 * 32);
    Ok(LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 })
}

fn special_typed<T: DeviceRepr>(kernel: &str, op: SpecialOp, src: &CudaSlice<T>, layout: &Layout, dev: &CudaDevice) -> Result<CudaSlice<T>> {
    let n = layout.shape().elem_count();
    let cfg = launch_config(n)?;
    let func = dev.get_or_load_custom_func(kernel, MODULE, PTX)?;
    let info = layout_info(dev, layout)?;
    let src = src.slice(layout.start_offset()..);
    // SAFETY: every element is written by the kernel before it is read.
    let mut out = unsafe { dev.alloc::<T>(n)? };
    let (op, ndims, null) = (op as i32, layout.dims().len(), 0usize);
    let mut b = func.builder();
    b.arg(&op).arg(&n).arg(&ndims);
    match &info {
        Some(i) => b.arg(i),
        None => b.arg(&null),
    };
    b.arg(&src).arg(&mut out);
    // SAFETY: the argument list matches the kernel's signature in kernels.cu.
    unsafe { b.launch(cfg) }.w()?;
    Ok(out)
}

/// y = f(x) elementwise on the GPU, f one of [`SpecialOp`]; f32 and f64, any layout.
pub(crate) fn special_fwd(op: SpecialOp, storage: &CudaStorage, layout: &Layout) -> Result<CudaStorage> {
    let dev = &storage.device;
    let slice = match &storage.slice {
        CudaStorageSlice::F32(s) => CudaStorageSlice::F32(special_typed("varattn_special_f32", op, s, layout, dev)?),
        CudaStorageSlice::F64(s) => CudaStorageSlice::F64(special_typed("varattn_special_f64", op, s, layout, dev)?),
        _ => candle_core::bail!("{op:?} on CUDA supports f32 and f64 tensors, got {:?}", storage.dtype()),
    };
    Ok(CudaStorage { slice, device: dev.clone() })
}

/// What the gamma kernel writes: dz/dα (backward of the implicit gamma op) or z (its forward).
#[derive(Debug, Clone, Copy)]
#[repr(i32)]
pub(crate) enum GammaMode {
    SampleGrad = 0,
    Identity = 1,
}

#[allow(clippy::too_many_arguments)]
fn gamma_typed<T: DeviceRepr>(
    kernel: &str,
    mode: GammaMode,
    alpha: &CudaSlice<T>,
    la: &Layout,
    z: &CudaSlice<T>,
    lz: &Layout,
    dev: &CudaDevice,
) -> Result<CudaSlice<T>> {
    if la.dims() != lz.dims() {
        candle_core::bail!("gamma kernel: alpha {:?} and z {:?} differ in shape", la.dims(), lz.dims())
    }
    let n = la.shape().elem_count();
    let cfg = launch_config(n)?;
    let func = dev.get_or_load_custom_func(kernel, MODULE, PTX)?;
    let (ia, iz) = (layout_info(dev, la)?, layout_info(dev, lz)?);
    let alpha = alpha.slice(la.start_offset()..);
    let z = z.slice(lz.start_offset()..);
    // SAFETY: every element is written by the kernel before it is read.
    let mut out = unsafe { dev.alloc::<T>(n)? };
    let (mode, ndims, null) = (mode as i32, la.dims().len(), 0usize);
    let mut b = func.builder();
    b.arg(&mode).arg(&n).arg(&ndims);
    match &ia {
        Some(i) => b.arg(i),
        None => b.arg(&null),
    };
    match &iz {
        Some(i) => b.arg(i),
        None => b.arg(&null),
    };
    b.arg(&alpha).arg(&z).arg(&mut out);
    // SAFETY: the argument list matches the kernel's signature in kernels.cu.
    unsafe { b.launch(cfg) }.w()?;
    Ok(out)
}

/// Elementwise over (α, z) of one shape: dz/dα of z ~ Gamma(α, 1) (PyTorch's approximation, as
/// [`super::scalar::standard_gamma_grad`]) or z itself; f32 and f64, any layouts.
pub(crate) fn gamma_fwd(mode: GammaMode, s1: &CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<CudaStorage> {
    let dev = &s1.device;
    let slice = match (&s1.slice, &s2.slice) {
        (CudaStorageSlice::F32(a), CudaStorageSlice::F32(z)) => {
            CudaStorageSlice::F32(gamma_typed("varattn_gamma_grad_f32", mode, a, l1, z, l2, dev)?)
        }
        (CudaStorageSlice::F64(a), CudaStorageSlice::F64(z)) => {
            CudaStorageSlice::F64(gamma_typed("varattn_gamma_grad_f64", mode, a, l1, z, l2, dev)?)
        }
        _ => candle_core::bail!(
            "implicit gamma gradient on CUDA needs matching f32 or f64 tensors, got {:?} and {:?}",
            s1.dtype(),
            s2.dtype()
        ),
    };
    Ok(CudaStorage { slice, device: dev.clone() })
}
