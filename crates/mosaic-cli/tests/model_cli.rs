//! `mosaic model describe` on every shipped architecture config.

use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn describe_every_arch_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/arch");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
            .args(["model", "describe"])
            .arg(&p)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let out = String::from_utf8(o.stdout).unwrap();
        for needle in [
            "parameters",
            "encoders",
            "fusion",
            "heads",
            "FLOPs per sample",
            "total",
        ] {
            assert!(
                out.contains(needle),
                "{}: no `{needle}` in\n{out}",
                p.display()
            );
        }
        n += 1;
    }
    assert!(n >= 7);
}

#[test]
fn describe_rejects_a_bad_config_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.toml");
    std::fs::write(
        &p,
        "name = \"x\"\ndim = 32\n[encoders.image]\nkind = \"vit\"\nimage_size = 30\npatch_size = 7\nchannels = 1\ndim = 32\nlayers = 1\nheads = 4\n[fusion]\nkind = \"late\"\n[heads.c]\nkind = \"classifier\"\nclasses = 3\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(["model", "describe"])
        .arg(&p)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("encoders.image.patch_size") && e.contains("bad.toml"),
        "{e}"
    );
}
