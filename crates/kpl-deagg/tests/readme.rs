//! The README shows the example file, verbatim.

#[test]
fn readme_example_is_the_example_file() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/roundtrip.rs");
    let start = readme.find("```rust\n").map(|i| i + "```rust\n".len());
    let shown = start.and_then(|start| {
        readme[start..]
            .find("```")
            .map(|end| &readme[start..start + end])
    });
    let code = example.split_once("\n\n").map(|(_doc, code)| code);
    assert_eq!(shown, code, "README.md and examples/roundtrip.rs differ");
}
