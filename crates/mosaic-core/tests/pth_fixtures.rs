//! The PyTorch reader against files written by real `torch.save`
//! (fixtures from `scripts/reference/make_pth_fixtures.py`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use mosaic_core::formats::{self, StorageDType, WeightFormat, pth::PthFile};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth")
}

fn torch_dtype(name: &str) -> StorageDType {
    match name {
        "float32" => StorageDType::F32,
        "float16" => StorageDType::F16,
        "bfloat16" => StorageDType::BF16,
        "float64" => StorageDType::F64,
        "int64" => StorageDType::I64,
        "bool" => StorageDType::Bool,
        "uint8" => StorageDType::U8,
        other => panic!("fixture dtype {other} not mapped"),
    }
}

#[test]
fn tensors_match_torch() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let files = expected["files"].as_object().unwrap();
    assert_eq!(files.len(), 3);
    for (file, spec) in files {
        let path = fixtures().join(file);
        let want_format = match spec["format"].as_str().unwrap() {
            "zip" => WeightFormat::PytorchZip,
            _ => WeightFormat::PytorchLegacy,
        };
        assert_eq!(
            formats::detect_format(&path).unwrap(),
            want_format,
            "{file}"
        );
        let pth = PthFile::open(&path).unwrap();
        let infos = pth.infos();
        let tensors = spec["tensors"].as_object().unwrap();
        assert_eq!(infos.len(), tensors.len(), "{file}: {infos:?}");
        let loaded = pth.load_all(&Device::Cpu).unwrap();
        for (name, t) in tensors {
            let info = infos
                .iter()
                .find(|i| &i.name == name)
                .unwrap_or_else(|| panic!("{file}: no {name}"));
            assert_eq!(
                info.dtype,
                torch_dtype(t["dtype"].as_str().unwrap()),
                "{file}:{name}"
            );
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(info.shape, shape, "{file}:{name}");
            let tensor = &loaded.iter().find(|(n, _)| n == name).unwrap().1;
            assert_eq!(tensor.dims(), &shape[..]);
            let got = tensor
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let want: Vec<f64> = t["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    v.as_f64()
                        .or_else(|| v.as_bool().map(|b| b as u8 as f64))
                        .unwrap()
                })
                .collect();
            assert_eq!(got, want, "{file}:{name}");
        }
    }
}

#[test]
fn bad_opcode_is_a_one_line_error_naming_the_file() {
    let path = fixtures().join("bad_opcode.pth");
    let err = PthFile::open(&path).err().expect("must fail").to_string();
    assert!(err.contains("bad_opcode.pth"), "{err}");
    assert!(
        err.contains("opcode 0xff") && err.contains("byte 137"),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[test]
fn truncated_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["zip_state_dict.pth", "legacy_state_dict.pth"] {
        let bytes = std::fs::read(fixtures().join(file)).unwrap();
        for cut in [1, 9, 40, 137, 300, bytes.len() / 2, bytes.len() - 1] {
            let p = dir.path().join(format!("cut-{cut}-{file}"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let r = PthFile::open(&p).and_then(|f| f.load_all(&Device::Cpu));
            assert!(r.is_err(), "{file} cut at {cut} loaded");
        }
    }
}

/// Byte flips all over real files: every reader must return (an error or
/// tensors), never panic or abort.
#[test]
fn corrupted_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs: Vec<(String, Vec<u8>)> = [
        "zip_state_dict.pth",
        "legacy_state_dict.pth",
        "nested_checkpoint.pth",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(fixtures().join(f)).unwrap()))
    .collect();
    let ct2 = dir.path().join("model.bin");
    let w: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
    formats::ct2::write(
        &ct2,
        "WhisperSpec",
        3,
        &[
            ("a/w", StorageDType::F32, &[3, 4], &w),
            ("n", StorageDType::I8, &[], &[3]),
        ],
        &[("b", "a/w")],
    )
    .unwrap();
    inputs.push(("model.bin".into(), std::fs::read(&ct2).unwrap()));
    let st = dir.path().join("x.safetensors");
    let mut t = std::collections::HashMap::new();
    t.insert(
        "w".to_string(),
        candle_core::Tensor::ones((3, 4), DType::F32, &Device::Cpu).unwrap(),
    );
    mosaic_core::checkpoint::save_safetensors(&st, &t).unwrap();
    inputs.push(("x.safetensors".into(), std::fs::read(&st).unwrap()));

    let p = dir.path().join("fuzz.bin");
    let mut runs = 0;
    for (name, bytes) in &inputs {
        // Deterministic positions spread over the file, several replacement bytes each.
        let step = (bytes.len() / 300).max(1);
        for pos in (0..bytes.len()).step_by(step) {
            for b in [0x00u8, 0x7f, 0x80, 0xff, bytes[pos].wrapping_add(1)] {
                let mut v = bytes.clone();
                v[pos] = b;
                std::fs::write(&p, &v).unwrap();
                if let Ok((_, infos)) = formats::read_tensor_infos(&p) {
                    let _ = infos.len();
                    let _ = formats::load_tensors(&p, &Device::Cpu);
                }
                runs += 1;
            }
        }
        assert!(runs > 0, "{name}");
    }
}
