//! Every input kept for the fuzz targets (`fuzz/corpus/<target>`, the seeds and what fuzzing
//! found worth keeping, and `fuzz/regressions/<target>`, inputs that once crashed) runs
//! through the same entry points on every `cargo test`.

use std::path::Path;

use amphi_core::fuzzing;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() && !path.ends_with(".gitkeep") {
                let data = std::fs::read(&path).unwrap();
                let result = std::panic::catch_unwind(|| run(&data));
                assert!(result.is_ok(), "{target}: {} fails", path.display());
                n += 1;
            }
        }
    }
    n
}

#[test]
fn every_kept_fuzz_input_still_passes() {
    assert!(replay("request", fuzzing::request) >= 5);
    assert!(replay("ogg", fuzzing::ogg) >= 1);
    assert!(replay("jitter", fuzzing::jitter) >= 1);
    assert!(replay("channel", fuzzing::channel) >= 1);
    assert!(replay("call", fuzzing::call) >= 1);
    assert!(replay("sdp", fuzzing::sdp) >= 1);
    assert!(replay("stun", fuzzing::stun) >= 1);
    assert!(replay("red", fuzzing::red) >= 1);
    assert!(replay("jwt", fuzzing::jwt) >= 2);
}
