//! Point clouds, sensor streams and text from WebDataset shards go through
//! the pipeline and loader like files do.

use mosaic_core::{Modality, ModalityValue, Sample};
use mosaic_data::loader::{Loader, LoaderConfig, Source};
use mosaic_data::manifest::ShardWriter;
use mosaic_data::pipeline::{Pipeline, SensorPipeline};
use mosaic_data::pointcloud::{PointCloudConfig, Sampling};

#[test]
fn shard_samples_decode_in_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::new(&dir.path().join("shards"), "mixed", 3, 1 << 30).unwrap();
    for i in 0..5 {
        let ply = dir.path().join(format!("c{i}.ply"));
        let mut text = String::from(
            "ply\nformat ascii 1.0\nelement vertex 20\nproperty float x\nproperty float y\nproperty float z\nend_header\n",
        );
        for k in 0..20 {
            text.push_str(&format!(
                "{} {} {}\n",
                k as f32 * 0.1,
                (k * i) as f32 * 0.01,
                1.0
            ));
        }
        std::fs::write(&ply, text).unwrap();
        let csv = dir.path().join(format!("s{i}.csv"));
        let rows: String = (0..10 + i)
            .map(|t| format!("{},{},{}\n", t as f64 * 0.1, t, t * 2))
            .collect();
        std::fs::write(&csv, format!("time,a,b\n{rows}")).unwrap();
        // Ids that would collide if used as keys ("x.1" and "x/1" → "x_1").
        let id = if i % 2 == 0 {
            format!("x.{}", i / 2)
        } else {
            format!("x/{}", i / 2)
        };
        let mut s = Sample::new(id)
            .with(Modality::PointCloud, ModalityValue::Path(ply))
            .with(Modality::Sensor, ModalityValue::Path(csv));
        s.labels.push(format!("c{}", i % 2));
        w.write(&s).unwrap();
    }
    let shards = w.finish().unwrap();
    assert_eq!(shards.len(), 2);
    let pipe = Pipeline {
        point_cloud: Some(PointCloudConfig {
            num_points: 8,
            sampling: Sampling::Farthest,
            ..Default::default()
        }),
        sensor: Some(SensorPipeline::default()),
        classes: Some(vec!["c0".into(), "c1".into()]),
        ..Default::default()
    };
    let loader = Loader::new(
        Source::shards(shards),
        pipe,
        LoaderConfig {
            batch_size: 5,
            strict: true,
            num_workers: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let b = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(b.batch.ids, vec!["x.0", "x/0", "x.1", "x/1", "x.2"]);
    assert_eq!(
        b.batch.get(Modality::PointCloud).unwrap().values.dims(),
        &[5, 8, 3]
    );
    let sensor = b.batch.get(Modality::Sensor).unwrap();
    assert_eq!(sensor.values.dims(), &[5, 14, 2]);
    let lens: Vec<u32> = sensor
        .mask
        .as_ref()
        .unwrap()
        .to_dtype(candle_core::DType::U32)
        .unwrap()
        .sum(1)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(lens, vec![10, 11, 12, 13, 14]);
    assert_eq!(
        b.classes.unwrap().to_vec1::<u32>().unwrap(),
        vec![0, 1, 0, 1, 0]
    );
}
