//! The main job: `cargo run --release --example bench`. The benchmark is an
//! application of its own, the `edgeloop-bench` crate in `bench/`; this
//! example is its door, so the README's first command stays as it is.

fn main() -> std::io::Result<()> {
    edgeloop_bench::main()
}
