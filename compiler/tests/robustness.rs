//! Hostile and half-typed input: the compiler answers with diagnostics, never a panic, a hang or a
//! stack overflow. (The coverage-guided fuzzer in `fuzz/` goes further; this runs on every test.)

use mca_compiler::{compile_one, Code};

fn examples() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "mca") {
                out.push(std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    out.sort();
    out
}

/// Compiles and checks the one invariant that must hold for any input.
fn compiles_without_panic(text: &str) {
    let c = compile_one("t.mca", text);
    assert_eq!(
        c.ir.is_some(),
        !c.has_errors(),
        "IR iff no errors, for:\n{text}"
    );
    for d in &c.diagnostics {
        assert!(d.primary.span.start <= d.primary.span.end && d.primary.span.end <= text.len());
        assert!(
            text.is_char_boundary(d.primary.span.start)
                && text.is_char_boundary(d.primary.span.end)
        );
    }
}

/// xorshift64*: a tiny deterministic generator, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "\\",
    "$",
    "$.",
    "$..",
    "[?",
    "@.",
    "==",
    "??",
    ":",
    "=",
    ",",
    "action",
    "input",
    "output",
    "request",
    "fallback",
    "on",
    "cache",
    "test",
    "expect",
    "say",
    "{input.",
    "{output.x}",
    "secret.X",
    "env.",
    "call.id",
    "string?",
    "list<",
    "enum(",
    "5s",
    "99999999999999999999999s",
    "404",
    "4xx",
    "GET",
    "POST",
    "\n",
    "ü",
    "😀",
    "\u{0}",
    "/*",
    "//",
    "'",
    "-1e999",
];

#[test]
fn every_prefix_of_every_example_compiles_without_panic() {
    for ex in examples() {
        let mut i = 0;
        while i <= ex.len() {
            compiles_without_panic(&ex[..i]);
            i = boundary(&ex, i + 7).max(i + 1);
        }
    }
}

#[test]
fn random_mutations_of_the_examples_compile_without_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let examples = examples();
    assert!(!examples.is_empty());
    for round in 0..3000 {
        let mut text = examples[round % examples.len()].clone();
        for _ in 0..1 + rng.below(4) {
            let a = boundary(&text, rng.below(text.len() + 1));
            let b = boundary(&text, a + rng.below(40));
            match rng.below(4) {
                0 => text.replace_range(a..b, ""),
                1 => {
                    let dup = text[a..b].to_string();
                    text.insert_str(a, &dup);
                }
                _ => text.insert_str(a, TOKENS[rng.below(TOKENS.len())]),
            }
        }
        compiles_without_panic(&text);
    }
}

#[test]
fn deep_nesting_is_refused_with_a_diagnostic_not_a_stack_overflow() {
    for open in ["[", "{", "("] {
        let text = format!(
            "action a {{ request POST \"https://x\" {{ body {} }} }}",
            open.repeat(100_000)
        );
        let c = compile_one("t.mca", &text);
        assert!(
            c.diagnostics.iter().any(|d| d.code == Code::TooDeep),
            "{open}"
        );
    }
    let path = format!(
        "action a {{ output {{ x: string = $.a{} }} }}",
        "[?@.b".repeat(50)
    );
    compiles_without_panic(&path);
}

/// The nesting check is what keeps the parser's recursion bounded (pest is used without a
/// stack probe): the deepest accepted input parses in half the stack Rust gives a spawned
/// thread (2 MiB), even unoptimized.
#[test]
fn the_deepest_accepted_nesting_parses_on_a_small_stack() {
    let depth = mca_compiler::syntax::MAX_NESTING - 2; // the request and body braces count too
    let texts = [
        format!(
            "action a {{ request POST \"https://x\" {{ body {}1{} }} }}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        format!(
            "action a {{ request POST \"https://x\" {{ body {}1{} }} }}",
            "{a: ".repeat(depth),
            "}".repeat(depth)
        ),
        format!(
            "action a {{ step s when {}1 == 1{} {{ }} }}",
            "(".repeat(depth),
            ")".repeat(depth)
        ),
    ];
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            for text in &texts {
                let c = compile_one("t.mca", text);
                assert!(
                    c.diagnostics.iter().all(|d| d.code != Code::TooDeep),
                    "{:?}",
                    c.diagnostics
                );
            }
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
}

#[test]
fn long_and_odd_inputs_compile_without_panic() {
    compiles_without_panic("");
    compiles_without_panic(&"\"".repeat(10_000));
    compiles_without_panic(&"/*".repeat(10_000));
    compiles_without_panic(&"action ".repeat(5_000));
    compiles_without_panic(&"}".repeat(10_000));
    compiles_without_panic("action a { say \"{\" }");
    compiles_without_panic("action a { say \"\\u12\" }");
    compiles_without_panic("action a { output { x: string = $[\"\\u12\"] } }");
    compiles_without_panic("\u{feff}action a {}");
}
