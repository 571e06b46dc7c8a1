//! A text-transform plugin: `upper`, `reverse` and `words`.
fn upper(input: &[u8]) -> Vec<u8> {
    input.to_ascii_uppercase()
}

fn reverse(input: &[u8]) -> Result<String, std::str::Utf8Error> {
    Ok(std::str::from_utf8(input)?.chars().rev().collect())
}

fn words(input: &[u8]) -> Result<String, std::str::Utf8Error> {
    Ok(std::str::from_utf8(input)?
        .split_whitespace()
        .count()
        .to_string())
}

wasmlet::export!(upper, reverse, words);

fn main() {}
