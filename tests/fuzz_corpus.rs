//! Replays every input of fuzz/corpus through its fuzz target's function: no new fuzzing
//! here, but every input ever kept (seeds and fixed crashes) must pass.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = 0;
    for (name, target) in tollgate::fuzzing::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|_| panic!("no corpus for {name} at {}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            target(&data);
            replayed += 1;
        }
    }
    assert!(
        replayed >= tollgate::fuzzing::TARGETS.len() * 3,
        "only {replayed} inputs"
    );
}
