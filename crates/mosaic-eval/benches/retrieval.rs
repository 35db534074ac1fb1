//! Retrieval evaluation speed: 10,000 image–text pairs (512-d embeddings,
//! the CLIP ViT-B/32 width; B = A + 6·N(0, 1), cosine ≈ 0.16 per pair), R@1/5/10, median rank and mAP both ways,
//! after the embeddings exist. Run with `cargo bench -p mosaic-eval --bench
//! retrieval` (skipped under `cargo test`).

use std::time::Instant;

use candle_core::{Device, Tensor};
use mosaic_eval::retrieval::{
    retrieval_from_embeddings, retrieval_from_similarity, similarity_matrix,
};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmark: run with `cargo bench` (skipped under `cargo test`)");
        return;
    }
    let (n, d) = (10_000usize, 512usize);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let a: Vec<f32> = (0..n * d)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let b: Vec<f32> = a
        .iter()
        .map(|&x| {
            x + 6.0 * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, &mut rng)
        })
        .collect();
    let dev = Device::Cpu;
    let ta = Tensor::from_vec(a, (n, d), &dev).unwrap();
    let tb = Tensor::from_vec(b, (n, d), &dev).unwrap();
    println!(
        "threads: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for run in 1..=3 {
        let t0 = Instant::now();
        let sim = similarity_matrix(&ta, &tb, true).unwrap();
        let t1 = Instant::now();
        let r = retrieval_from_similarity(&sim, n, n, None, None).unwrap();
        let t2 = Instant::now();
        println!(
            "run {run}: 10,000 x 10,000 cosine matrix {:.3} s + retrieval both ways {:.3} s = {:.3} s \
             (i->t R@1 {:.4} R@5 {:.4} R@10 {:.4} medR {} mAP {:.4}; t->i R@1 {:.4})",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t2 - t0).as_secs_f64(),
            r.a_to_b.r1,
            r.a_to_b.r5,
            r.a_to_b.r10,
            r.a_to_b.median_rank,
            r.a_to_b.map,
            r.b_to_a.r1
        );
        let t3 = Instant::now();
        let e = retrieval_from_embeddings(&ta, &tb, None, None, true).unwrap();
        assert_eq!(e.a_to_b.ranks, r.a_to_b.ranks);
        println!(
            "run {run}: retrieval_from_embeddings (matrix ranked in place, no copy) {:.3} s",
            t3.elapsed().as_secs_f64()
        );
    }
}
