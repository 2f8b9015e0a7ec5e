//! Every editor feature, called directly (no panic guard), at many cursors of many broken
//! texts: prefixes and random mutations of every example and UI case. A panic fails the test.

mod common;

use mca_lsp::ide::{self, FileView};
use mca_lsp::scan;

fn exercise(text: &str, next: &mut impl FnMut(usize) -> usize) {
    let analysis = scan::analyze(text);
    let other = scan::analyze("action other {\n  invalidates lookup_customer\n}\n");
    let files = [
        FileView {
            name: "a.mca",
            text,
            analysis: &analysis,
        },
        FileView {
            name: "b.mca",
            text: "action other {\n  invalidates lookup_customer\n}\n",
            analysis: &other,
        },
    ];
    // Marks are sorted, disjoint and on character boundaries.
    let mut last = 0;
    for m in &analysis.marks {
        assert!(m.span.start >= last && m.span.start < m.span.end, "{m:?}");
        assert!(text.is_char_boundary(m.span.start) && text.is_char_boundary(m.span.end));
        last = m.span.end;
    }
    let _ = ide::symbols(&files[0]);
    let _ = ide::semantic_tokens(&files[0]);
    let _ = mca_compiler::format::format(text);
    let mut offsets: Vec<usize> = (0..8).map(|_| next(text.len() + 1)).collect();
    offsets.push(text.len());
    offsets.push(0);
    for mut o in offsets {
        while !text.is_char_boundary(o) {
            o -= 1;
        }
        let _ = ide::completion(&files, 0, o);
        let _ = ide::hover(&files, 0, o);
        let _ = ide::definition(&files, 0, o);
        let _ = ide::references(&files, 0, o, true);
        let _ = ide::prepare_rename(&files, 0, o);
        if let Ok(edits) = ide::rename(&files, 0, o, "renamed") {
            for (f, span, _) in edits {
                let t = files[f].text;
                assert!(span.end <= t.len() && !span.is_empty() && t.is_char_boundary(span.start));
            }
        }
        let _ = scan::context_at(text, &analysis.tokens, o);
    }
}

#[test]
fn features_never_panic_on_broken_text() {
    let mut seed: u64 = 0x1234_5678_9abc_def1;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let mut texts: Vec<String> = common::examples().into_iter().map(|(_, t)| t).collect();
    let ui = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
    if let Ok(entries) = std::fs::read_dir(ui) {
        for e in entries.flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path()) {
                texts.push(t);
            }
        }
    }
    let junk = [
        "{", "}", "\"", "$.", "input.", "(", "<", ">", "[", ",", "=", "??", "/*", "//", "é", "😀",
        "\n", "action ",
    ];
    for text in &texts {
        // Prefixes.
        for _ in 0..6 {
            let mut cut = next(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            exercise(&text[..cut], &mut next);
        }
        // Mutations: deletions and insertions of punctuation.
        let mut t = text.clone();
        for _ in 0..6 {
            let mut at = next(t.len() + 1);
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            if next(2) == 0 {
                let mut end = (at + next(12)).min(t.len());
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                t.replace_range(at..end, "");
            } else {
                t.insert_str(at, junk[next(junk.len())]);
            }
            exercise(&t, &mut next);
        }
    }
    for s in [
        "",
        "\"",
        "{",
        "}",
        "action",
        "action {",
        "$",
        "a.b.",
        "input.",
        "\u{FEFF}",
        "/*",
        "action a { input x: list<list<",
        // Half-typed steps, conditions and step-aware tests.
        "action a { step",
        "action a { step s deferred within",
        "action a { step s when step.",
        "action a { step s when step.t.",
        "action a { step s when not (step.t.n >= 2 or (input.x <",
        "action a { step s { output { n: list<int> = $.n } on 404 { n = ",
        "action a { output { a: bool = (step.x.y > 1) and not",
        "action a { output { a: int? = step.x.y ?? 0 when input.",
        "action a { say \"{step.s.\" when output.x != null and",
        "action a { follow_up when",
        "action a { timeout 4s test \"t\" { upstream s 200 {} expect request s GET",
        "action a { step s { request GET \"{step.s.x}\" { body { a: step.s.x } } output { x: int = $.x } } step.s.x.y.",
        ")>< step when and or not ==",
    ] {
        exercise(s, &mut next);
    }
}
