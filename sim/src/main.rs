//! `flushsim`: see [`flush_sim::cli`].

fn main() -> std::process::ExitCode {
    flush_sim::cli::main()
}
