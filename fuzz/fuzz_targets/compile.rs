//! Parse + check + lower any bytes: must never panic, hang or overflow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let c = mca_compiler::compile_one("fuzz.mca", text);
        // Invariant: IR exactly when there are no errors.
        assert_eq!(c.ir.is_some(), !c.has_errors());
    }
});
