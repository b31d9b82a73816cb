//! `bench`: see the crate's documentation (`edgeloop_bench`).

fn main() -> std::io::Result<()> {
    edgeloop_bench::main()
}
