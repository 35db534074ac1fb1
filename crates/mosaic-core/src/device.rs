//! Device and dtype selection from user strings (`--device cpu|cuda:N`,
//! `--dtype f32|f16|bf16`).

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl DeviceSpec {
    /// Opens the device. Asking for CUDA in a build without the `cuda`
    /// feature, or for a GPU that is not there, is an error naming the device.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    return Err(Error::InvalidArgument {
                        what: "device",
                        value: self.to_string(),
                        message: "this build of Mosaic has no CUDA support; rebuild with `--features cuda`".into(),
                    });
                }
                Device::new_cuda(n).map_err(|e| Error::InvalidArgument {
                    what: "device",
                    value: self.to_string(),
                    message: format!("cannot open the GPU: {e}"),
                })
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |message: &str| Error::InvalidArgument {
            what: "device",
            value: s.to_string(),
            message: message.to_string(),
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceSpec::Cuda).map_err(|_| {
                    bad("the GPU ordinal after `cuda:` must be a number, e.g. cuda:0")
                }),
                None => Err(bad("expected `cpu`, `cuda` or `cuda:N`")),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

/// Floating-point precision for weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DTypeSpec {
    /// 32-bit float (the default; the only one used for reference parity).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

impl DTypeSpec {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            DTypeSpec::F32 => DType::F32,
            DTypeSpec::F16 => DType::F16,
            DTypeSpec::BF16 => DType::BF16,
        }
    }
}

impl fmt::Display for DTypeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DTypeSpec::F32 => "f32",
            DTypeSpec::F16 => "f16",
            DTypeSpec::BF16 => "bf16",
        })
    }
}

impl FromStr for DTypeSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(DTypeSpec::F32),
            "f16" | "float16" | "fp16" | "half" => Ok(DTypeSpec::F16),
            "bf16" | "bfloat16" => Ok(DTypeSpec::BF16),
            _ => Err(Error::InvalidArgument {
                what: "dtype",
                value: s.to_string(),
                message: "expected `f32`, `f16` or `bf16`".into(),
            }),
        }
    }
}

impl TryFrom<String> for DTypeSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DTypeSpec> for String {
    fn from(d: DTypeSpec) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        let err = "cuda:x".parse::<DeviceSpec>().unwrap_err().to_string();
        assert!(err.contains("`cuda:x`"), "{err}");
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!(DeviceSpec::Cpu.device().unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        let err = DeviceSpec::Cuda(0).device().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }

    #[test]
    fn parses_dtypes() {
        assert_eq!("bf16".parse::<DTypeSpec>().unwrap().dtype(), DType::BF16);
        assert_eq!("float16".parse::<DTypeSpec>().unwrap().dtype(), DType::F16);
        assert!("f8".parse::<DTypeSpec>().is_err());
        let d: DTypeSpec = serde_json::from_str("\"f16\"").unwrap();
        assert_eq!(d, DTypeSpec::F16);
    }
}
