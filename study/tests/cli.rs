//! The study's programs refuse counts (and a pitfall number) of zero,
//! naming the flag.

use std::process::Command;

#[test]
fn the_study_programs_refuse_zero_counts() {
    for (program, args, says) in [
        (
            env!("CARGO_BIN_EXE_models"),
            ["--connections", "0"],
            "connections",
        ),
        (
            env!("CARGO_BIN_EXE_lt_vs_et"),
            ["--messages", "0"],
            "messages",
        ),
        (
            env!("CARGO_BIN_EXE_backends"),
            ["--watched", "0"],
            "watched",
        ),
        (env!("CARGO_BIN_EXE_pitfalls"), ["--only", "0"], "only"),
    ] {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(!out.status.success(), "{program} {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{program}: {stderr}");
    }
}
