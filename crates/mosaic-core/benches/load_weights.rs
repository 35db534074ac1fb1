//! Weight-file loading speed: every tensor of each file given on the command
//! line read into CPU memory, median of N runs after one warm-up.
//! Run through `scripts/bench/load_weights.sh`, which times the Python
//! reference on the same files in the same run.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use mosaic_core::formats;

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a == "--runs" || !a.starts_with("--"))
        .collect();
    let runs: usize = match args.iter().position(|a| a == "--runs") {
        Some(i) => {
            let n = args[i + 1].parse().expect("--runs N");
            args.drain(i..=i + 1);
            n
        }
        None => 10,
    };
    if args.is_empty() {
        eprintln!("usage: load_weights [--runs N] FILE...");
        return;
    }
    for a in args {
        let path = PathBuf::from(&a);
        let load = || {
            let t = formats::load_tensors(&path, &Device::Cpu).expect("file loads");
            t.iter().map(|(_, t)| t.elem_count()).sum::<usize>()
        };
        let elems = load(); // warm-up (page cache)
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(load());
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{}\t{}\t{:.2}",
            path.display(),
            elems,
            times[times.len() / 2]
        );
    }
}
