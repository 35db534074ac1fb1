//! Quick manual check: top-5 ImageNet indices of an image with EfficientNet-Lite0.
use mosaic_data::image::{DecodeOptions, Filter, ImageProcessor, ResizeTo, load_image};
use mosaic_models::pretrained::EfficientNetLite;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let m = EfficientNetLite::from_pretrained(std::path::Path::new(&args[1])).unwrap();
    let img = load_image(std::path::Path::new(&args[2]), &DecodeOptions::default()).unwrap();
    for (name, mean, std) in [
        (
            "imagenet",
            [0.485f32, 0.456, 0.406],
            [0.229f32, 0.224, 0.225],
        ),
        ("lite", [0.498; 3], [0.502; 3]),
    ] {
        let p = ImageProcessor {
            resize: Some(ResizeTo::ShortestEdge {
                shortest_edge: 256,
                longest_edge: None,
            }),
            filter: Filter::Bicubic,
            center_crop: Some((224, 224)),
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some((mean, std)),
        };
        let x = p.preprocess(&img).unwrap().unsqueeze(0).unwrap();
        let t = std::time::Instant::now();
        let logits: Vec<f32> = m
            .forward(&x)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut idx: Vec<usize> = (0..1000).collect();
        idx.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
        println!(
            "{name}: top5 {:?} ({:.0} ms)",
            &idx[..5],
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
}
