//! Loading and running the published PP-OCR ONNX graphs with tract.
//!
//! Each graph is typed and decluttered once, at load, with symbolic input
//! sizes (batch, height, width). tract's convolution and matrix kernels are
//! several times faster when every size is known, so each distinct input
//! shape then gets its own optimised plan — substituting the sizes and
//! optimising takes 50–150 ms — kept in a small cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};

type Plan = TypedSimplePlan<TypedModel>;

/// Optimised plans kept per graph (distinct input shapes).
const PLAN_CACHE: usize = 32;

/// One input dimension: fixed, or `multiple * symbol`.
#[derive(Debug, Clone)]
enum Dim {
    Fixed(usize),
    Sym(Symbol, usize),
}

/// One ONNX graph ready to run.
pub(crate) struct Net {
    typed: TypedModel,
    dims: Vec<Dim>,
    cache: Mutex<HashMap<Vec<usize>, Arc<Plan>>>,
    what: &'static str,
    path: PathBuf,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("what", &self.what)
            .field("path", &self.path)
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

/// Paddle2ONNX computes reshape targets as `Shape → Cast(int32) → Slice →
/// Cast(int64) → Concat`; tract keeps symbolic sizes through int64 shape
/// arithmetic but not through the int32 cast. Casting shape values to int64
/// instead changes no value (sizes fit either type) and lets the graph be
/// typed once for every batch size and width.
fn widen_shape_casts(proto: &mut ModelProto) {
    let Some(g) = proto.graph.as_mut() else {
        return;
    };
    let shape_outputs: std::collections::HashSet<String> = g
        .node
        .iter()
        .filter(|n| n.op_type == "Shape")
        .flat_map(|n| n.output.iter().cloned())
        .collect();
    const INT32: i64 = 6;
    const INT64: i64 = 7;
    for n in g.node.iter_mut() {
        if n.op_type == "Cast" && n.input.first().is_some_and(|i| shape_outputs.contains(i)) {
            for a in n.attribute.iter_mut() {
                if a.name == "to" && a.i == INT32 {
                    a.i = INT64;
                }
            }
        }
    }
}

impl Net {
    /// Types the graph with input 0 of shape `dims`: numbers are fixed,
    /// names are symbols, `k*name` is a multiple of a symbol (e.g.
    /// `["1", "3", "32*h", "32*w"]`: the detector's sides are multiples of
    /// 32, which lets tract prove its FPN shapes agree). `probe` is a shape
    /// to build a first plan for, so that a graph tract cannot run fails at
    /// load time.
    pub(crate) fn from_proto(
        mut proto: ModelProto,
        path: &Path,
        what: &'static str,
        dims: &[&str],
        probe: [usize; 4],
    ) -> Result<Net> {
        let err = |e: TractError| Error::Model {
            path: path.to_path_buf(),
            what,
            message: format!("{e:#}"),
        };
        widen_shape_casts(&mut proto);
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .map_err(err)?;
        if model.inputs.len() != 1 || model.outputs.is_empty() {
            return Err(Error::Model {
                path: path.to_path_buf(),
                what,
                message: format!("expected one input, found {}", model.inputs.len()),
            });
        }
        let spec: Vec<Dim> = dims
            .iter()
            .map(|d| match (d.parse::<usize>(), d.split_once('*')) {
                (Ok(n), _) => Dim::Fixed(n),
                (_, Some((k, name))) => Dim::Sym(model.symbols.sym(name), k.parse().unwrap_or(1)),
                _ => Dim::Sym(model.symbols.sym(d), 1),
            })
            .collect();
        let shape: Vec<TDim> = spec
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => TDim::from(*n as i64),
                Dim::Sym(s, k) => TDim::from(s.clone()) * *k as i64,
            })
            .collect();
        model
            .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))
            .map_err(err)?;
        let typed = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .map_err(err)?;
        let net = Net {
            typed,
            dims: spec,
            cache: Mutex::new(HashMap::new()),
            what,
            path: path.to_path_buf(),
        };
        net.plan(&probe).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            what,
            message: e.to_string(),
        })?;
        Ok(net)
    }

    /// The optimised plan for one concrete input shape (cached).
    fn plan(&self, shape: &[usize]) -> Result<Arc<Plan>> {
        if let Some(p) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(shape)
        {
            return Ok(p.clone());
        }
        let fail = |message: String| Error::Inference {
            what: self.what,
            shape: shape.to_vec(),
            message,
        };
        if shape.len() != self.dims.len() {
            return Err(fail(format!("expected {} dimensions", self.dims.len())));
        }
        let mut values = SymbolValues::default();
        for (d, &n) in self.dims.iter().zip(shape) {
            match d {
                Dim::Fixed(k) if *k != n => {
                    return Err(fail(format!("a dimension must be {k}, got {n}")));
                }
                Dim::Fixed(_) => {}
                Dim::Sym(s, k) => {
                    if n == 0 || n % k != 0 {
                        return Err(fail(format!(
                            "a dimension must be a positive multiple of {k}, got {n}"
                        )));
                    }
                    values.set(s, (n / k) as i64);
                }
            }
        }
        let plan = self
            .typed
            .concretize_dims(&values)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| fail(format!("{e:#}")))?;
        let plan = Arc::new(plan);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= PLAN_CACHE {
            cache.clear();
        }
        cache.insert(shape.to_vec(), plan.clone());
        Ok(plan)
    }

    /// Runs on one NCHW f32 input; returns the first output's data and shape.
    pub(crate) fn run(&self, data: Vec<f32>, shape: [usize; 4]) -> Result<(Vec<f32>, Vec<usize>)> {
        let err = |e: TractError| Error::Inference {
            what: self.what,
            shape: shape.to_vec(),
            message: format!("{e:#}"),
        };
        let plan = self.plan(&shape)?;
        let input: TValue = Tensor::from_shape(&shape, &data).map_err(err)?.into();
        let out = plan.run(tvec!(input)).map_err(err)?;
        let t = out[0].clone().into_tensor();
        let dims = t.shape().to_vec();
        let v = t.as_slice::<f32>().map_err(err)?.to_vec();
        Ok((v, dims))
    }
}
