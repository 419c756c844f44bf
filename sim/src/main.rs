//! `flushsim`: see [`flush_sim::cli`].

/// mimalloc rather than the system allocator: see `sim/Cargo.toml`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    flush_sim::cli::main()
}
