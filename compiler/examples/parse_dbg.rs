//! Prints the diagnostics of files: `cargo run -p mca-compiler --example parse_dbg -- FILE...`.
fn main() {
    let sources: Vec<mca_compiler::Source> = std::env::args()
        .skip(1)
        .map(|p| {
            mca_compiler::Source::new(p.clone(), std::fs::read_to_string(&p).unwrap_or_default())
        })
        .collect();
    let c = mca_compiler::compile(&sources);
    for d in &c.diagnostics {
        let src = &sources[d.primary.file];
        let idx = mca_compiler::LineIndex::new(&src.text);
        let (l, col) = idx.line_col(&src.text, d.primary.span.start);
        println!(
            "{}:{l}:{col} {} {} [{}] hint={:?}",
            src.name,
            d.code.as_str(),
            d.message,
            d.primary.message,
            d.hint
        );
    }
    println!("ir: {}", c.ir.is_some());
}
