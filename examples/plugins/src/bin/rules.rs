//! A rules plugin: `check` reads `key=value` lines and says which break a
//! rule (keys are lowercase words, values at most 12 characters).
fn check(input: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(input).map_err(|e| e.to_string())?;
    let mut broken = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once('=') else {
            broken.push(format!("line {}: no `=`", n + 1));
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase()) {
            broken.push(format!(
                "line {}: key `{key}` is not a lowercase word",
                n + 1
            ));
        }
        if value.chars().count() > 12 {
            broken.push(format!("line {}: value longer than 12", n + 1));
        }
    }
    if broken.is_empty() {
        Ok(format!("{} lines pass", text.lines().count()))
    } else {
        Err(broken.join("; "))
    }
}

wasmlet::export!(check);

fn main() {}
