//! host-runner: runs a metashrew-ABI WASM indexer over blocks (see the library's `cli`).

fn main() -> std::process::ExitCode {
    host_runner::cli::main()
}
