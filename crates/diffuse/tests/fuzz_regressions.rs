//! Replays the fuzzers' seeds and every input a fuzz run found (fuzz/seeds, fuzz/regressions) through the
//! same entry points the fuzz targets call, so a fixed finding stays fixed without nightly or cargo-fuzz.

use std::path::Path;

#[test]
fn every_kept_fuzz_input_is_handled_without_a_panic() {
    let fuzz = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"));
    let mut replayed = 0;
    for (name, target) in diffuse::fuzzing::TARGETS {
        for kind in ["seeds", "regressions"] {
            let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(name)) else {
                continue;
            };
            for entry in dir.flatten() {
                let bytes = std::fs::read(entry.path()).unwrap();
                eprintln!("{}", entry.path().display());
                target(&bytes);
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 18, "only {replayed} inputs found under {}", fuzz.display());
}
