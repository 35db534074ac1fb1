//! Loading and running the published PP-OCR ONNX graphs with tract.

use std::path::Path;

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// One optimised ONNX graph with a symbolic batch (and spatial) size.
pub(crate) struct Net {
    plan: TypedSimplePlan<TypedModel>,
    what: &'static str,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

/// Reads an ONNX file; errors name the file.
pub(crate) fn read_proto(path: &Path, what: &'static str) -> Result<ModelProto> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| Error::Model {
            path: path.to_path_buf(),
            what,
            message: format!("not an ONNX model ({e})"),
        })
}

/// A `metadata_props` value of the model.
pub(crate) fn metadata<'a>(proto: &'a ModelProto, key: &str) -> Option<&'a str> {
    proto
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

impl Net {
    /// Builds the graph with input 0 of shape `dims`: numbers are fixed,
    /// names are symbols resolved at each run (e.g. `["N", "3", "H", "W"]`).
    pub(crate) fn from_proto(
        proto: &ModelProto,
        path: &Path,
        what: &'static str,
        dims: &[&str],
    ) -> Result<Net> {
        let err = |e: TractError| Error::Model {
            path: path.to_path_buf(),
            what,
            message: format!("{e:#}"),
        };
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(err)?;
        if model.inputs.len() != 1 || model.outputs.is_empty() {
            return Err(Error::Model {
                path: path.to_path_buf(),
                what,
                message: format!("expected one input, found {}", model.inputs.len()),
            });
        }
        let shape: Vec<TDim> = dims
            .iter()
            .map(|d| match d.parse::<i64>() {
                Ok(n) => TDim::from(n),
                Err(_) => model.symbols.sym(d).into(),
            })
            .collect();
        model
            .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))
            .map_err(err)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        Ok(Net { plan, what })
    }

    /// Runs on one NCHW f32 input; returns the first output's data and shape.
    pub(crate) fn run(&self, data: Vec<f32>, shape: [usize; 4]) -> Result<(Vec<f32>, Vec<usize>)> {
        let err = |e: TractError| Error::Inference {
            what: self.what,
            shape: shape.to_vec(),
            message: format!("{e:#}"),
        };
        let input = Tensor::from_shape(&shape, &data).map_err(err)?;
        let out = self.plan.run(tvec!(input.into())).map_err(err)?;
        let t = out[0].clone().into_tensor();
        let dims = t.shape().to_vec();
        let v = t.as_slice::<f32>().map_err(err)?.to_vec();
        Ok((v, dims))
    }
}
