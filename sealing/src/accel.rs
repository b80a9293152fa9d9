//! Choosing where work runs: the CPU, or a device through `lode-gpu` (the `gpu` feature, on by
//! default). `--gpu auto|off|opencl|cuda` on the command line and `gpu` in the daemons'
//! configuration parse into [`GpuChoice`]; [`open`] turns it into a device or none, and says which.

use std::fmt;
use std::str::FromStr;

use crate::error::{SealError, SealResult};

/// A device with lode's kernels (from `lode-gpu`).
#[cfg(feature = "gpu")]
pub use lode_gpu::Gpu;

/// No device exists in a build without the `gpu` feature.
#[cfg(not(feature = "gpu"))]
#[derive(Debug)]
pub enum Gpu {}

#[cfg(not(feature = "gpu"))]
impl fmt::Display for Gpu {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

/// Which device to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuChoice {
    /// A real GPU when there is one (CUDA first, then an OpenCL GPU), the CPU otherwise.
    #[default]
    Auto,
    /// The CPU only.
    Off,
    /// The first OpenCL device, of any type (PoCL's CPU device included); an error without one.
    #[serde(rename = "opencl")]
    OpenCl,
    /// CUDA device 0; an error without one.
    Cuda,
}

impl fmt::Display for GpuChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpuChoice::Auto => "auto",
            GpuChoice::Off => "off",
            GpuChoice::OpenCl => "opencl",
            GpuChoice::Cuda => "cuda",
        })
    }
}

impl FromStr for GpuChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GpuChoice::Auto),
            "off" | "cpu" => Ok(GpuChoice::Off),
            "opencl" => Ok(GpuChoice::OpenCl),
            "cuda" => Ok(GpuChoice::Cuda),
            other => Err(format!(
                "unknown device {other:?}: use auto, off, opencl or cuda"
            )),
        }
    }
}

/// Opens the device `choice` names: `None` for the CPU (`off`, or `auto` without a GPU), the
/// choice logged either way.
///
/// # Errors
/// [`SealError::Device`] when `opencl` or `cuda` was asked for and cannot be had (no library,
/// no device, kernels refused, or a build without the `gpu` feature).
pub fn open(choice: GpuChoice) -> SealResult<Option<Gpu>> {
    let gpu = open_device(choice)?;
    match &gpu {
        Some(g) => tracing::info!(%choice, device = %g, "labelling on a device"),
        None => tracing::info!(%choice, "labelling on the CPU"),
    }
    Ok(gpu)
}

#[cfg(feature = "gpu")]
fn open_device(choice: GpuChoice) -> SealResult<Option<Gpu>> {
    let device = |e: lode_gpu::GpuError| SealError::Device(e.to_string());
    match choice {
        GpuChoice::Off => Ok(None),
        GpuChoice::Auto => Ok(Gpu::auto()),
        GpuChoice::OpenCl => Gpu::opencl().map(Some).map_err(device),
        GpuChoice::Cuda => Gpu::cuda().map(Some).map_err(device),
    }
}

#[cfg(not(feature = "gpu"))]
fn open_device(choice: GpuChoice) -> SealResult<Option<Gpu>> {
    match choice {
        GpuChoice::Off | GpuChoice::Auto => Ok(None),
        GpuChoice::OpenCl | GpuChoice::Cuda => Err(SealError::Device(format!(
            "--gpu {choice}: this lode was built without the gpu feature"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn choices_parse_and_print_the_same_words() {
        for c in [
            GpuChoice::Auto,
            GpuChoice::Off,
            GpuChoice::OpenCl,
            GpuChoice::Cuda,
        ] {
            assert_eq!(c.to_string().parse::<GpuChoice>().unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
        }
        assert!(
            "gpu"
                .parse::<GpuChoice>()
                .unwrap_err()
                .contains("auto, off")
        );
        assert_eq!(open(GpuChoice::Off).unwrap().map(|_| ()), None);
    }
}
