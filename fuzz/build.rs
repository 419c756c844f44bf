//! Stops a `--features sim` build without `--cfg madsim` with a clear
//! message, before the simulator fails to compile with a confusing one.
//! cargo-fuzz replaces the configured rustflags with its own, so the cfg
//! must come from the environment:
//! `RUSTFLAGS="--cfg madsim" cargo +nightly fuzz run --features sim <target>`.

fn main() {
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    if std::env::var_os("CARGO_FEATURE_SIM").is_none() {
        return;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\u{1f}').collect();
    let has_madsim = flags
        .windows(2)
        .any(|pair| pair[0] == "--cfg" && pair[1] == "madsim")
        || flags.contains(&"--cfg=madsim");
    if !has_madsim {
        eprintln!(
            "\n\nerror: the `sim` feature (sim_plan, cli_input) needs `--cfg madsim`, and cargo-fuzz \
             replaces the configured rustflags with its own; run\n\n    \
             RUSTFLAGS=\"--cfg madsim\" cargo +nightly fuzz run --features sim <target>\n\n\
             (cargo-fuzz appends RUSTFLAGS to its flags; ci/fuzz-smoke.sh does this)\n\n"
        );
        std::process::exit(1);
    }
}
