//! The compact model's load step: Binaryen's Asyncify pass over a guest
//! module (after the loader's own rewrite), cached on disk.
//!
//! Asyncify makes every function that can reach an import that may wait
//! able to unwind (save its locals into guest memory and return) and
//! rewind (restore them and carry on from the call it left); `unwind` is
//! the runtime side. Only the imports that may wait are named to the pass
//! (`may_wait`): the fewer functions it instruments, the smaller and faster
//! the module.
//!
//! Two findings shape the call (see `docs/design.md`):
//! - the pass runs alone: the `wasm-opt` crate's default passes run
//!   *before* an added pass, and a module optimised first unwound saving
//!   no frames at all;
//! - it is slow on big modules (1.8 s alone, 18.6 s with `-O2` after it on
//!   a 1.3 MB guest), so its output is cached, keyed by what it depends on:
//!   [`TRANSFORM_VERSION`], the imports named, and the module's bytes. A
//!   cache entry that does not compile is ignored and made again.
//!
//! Binaryen is C++ in this process, and some of its failures end the
//! process: so a module is first validated against exactly the features the
//! pass is run with, and refused with the reason if it uses another.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasm_opt::{Feature, OptimizationOptions, Pass};
use wasmparser::{Parser, Payload, TypeRef, Validator, WasmFeatures};
use wasmtime::{format_err, Result};

/// Bumped whenever the transform's output would change for the same input
/// (the pass's arguments, Binaryen's version): part of every cache key.
pub(crate) const TRANSFORM_VERSION: &str = "wasmlet-asyncify-1/binaryen-116";

/// The WebAssembly features a module may use to be transformed: those
/// `wasm32-wasip1-threads` code uses, which Binaryen is told of.
const FEATURES: &[Feature] = &[
    Feature::Atomics,
    Feature::BulkMemory,
    Feature::MutableGlobals,
    Feature::SignExt,
    Feature::TruncSat,
    Feature::Multivalue,
    Feature::ReferenceTypes,
    Feature::Simd,
];

fn allowed_features() -> WasmFeatures {
    WasmFeatures::WASM1
        | WasmFeatures::THREADS
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::REFERENCE_TYPES
        | WasmFeatures::SIMD
        | WasmFeatures::FLOATS
}

/// Where transformed modules are kept: `$WASMLET_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/wasmlet`, else `~/.cache/wasmlet`; None if none is
/// set (then nothing is kept).
pub(crate) fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WASMLET_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("wasmlet"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("wasmlet"))
}

/// The module `bytes` with Asyncify applied: from the cache in `cache` if
/// it holds it and `usable` accepts it, else made (and kept there). Imports
/// `may_wait` accepts are the ones a green thread may unwind out of.
///
/// # Errors
/// If the module uses a feature the transform does not handle, or Binaryen
/// fails on it; the message says why. A cache that cannot be written is not
/// an error (the module is made again next time).
pub(crate) fn transform(
    bytes: &[u8],
    may_wait: fn(&str, &str) -> bool,
    cache: Option<&Path>,
    usable: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>> {
    let imports = waiting_imports(bytes, may_wait)?;
    let key = cache_key(bytes, &imports);
    let entry = cache.map(|dir| dir.join(format!("asyncify-{key}.wasm")));
    if let Some(entry) = &entry {
        if let Ok(cached) = std::fs::read(entry) {
            if usable(&cached) {
                return Ok(cached);
            }
            tracing::warn!("ignoring an unusable cache entry {}", entry.display());
        }
    }
    let made = run_pass(bytes, &imports)?;
    if let Some(entry) = &entry {
        if let Err(e) = keep(entry, &made) {
            tracing::debug!("could not cache the transformed module: {e}");
        }
    }
    Ok(made)
}

/// The module's imported functions that may wait, as Asyncify's list
/// (`module.name`, comma-separated).
///
/// # Errors
/// If the module uses a feature outside [`FEATURES`] (or is invalid).
fn waiting_imports(bytes: &[u8], may_wait: fn(&str, &str) -> bool) -> Result<String> {
    Validator::new_with_features(allowed_features())
        .validate_all(bytes)
        .map_err(|e| {
            format_err!(
                "the compact model cannot transform this module: {e} (it uses a WebAssembly \
                 feature the transform does not handle); run it with fibers"
            )
        })?;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::ImportSection(reader) = payload? {
            for import in reader.into_imports() {
                let import = import?;
                if matches!(import.ty, TypeRef::Func(_)) && may_wait(import.module, import.name) {
                    if import.module.contains(',') || import.name.contains(',') {
                        return Err(format_err!(
                            "the compact model cannot name the import `{}::{}` to the \
                             transform (a comma in its name); run it with fibers",
                            import.module,
                            import.name
                        ));
                    }
                    names.push(format!("{}.{}", import.module, import.name));
                }
            }
        }
    }
    Ok(names.join(","))
}

fn cache_key(bytes: &[u8], imports: &str) -> String {
    let mut hash = Sha256::new();
    for part in [TRANSFORM_VERSION.as_bytes(), imports.as_bytes(), bytes] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs Asyncify alone over `bytes` (files in a private temporary folder:
/// the `wasm-opt` crate reads and writes files).
fn run_pass(bytes: &[u8], imports: &str) -> Result<Vec<u8>> {
    let dir = TempDir::new()?;
    let (input, output) = (dir.0.join("in.wasm"), dir.0.join("out.wasm"));
    std::fs::write(&input, bytes)?;
    let mut options = OptimizationOptions::new_opt_level_0();
    for &feature in FEATURES {
        options.enable_feature(feature);
    }
    options
        .debug_info(true)
        .add_pass(Pass::Asyncify)
        .set_pass_arg("asyncify-imports", imports)
        // The state and data globals are imported, so the host sets them
        // directly (see `unwind`).
        .set_pass_arg("asyncify-relocatable", "");
    options
        .run(&input, &output)
        .map_err(|e| format_err!("the compact model's transform failed on this module: {e}"))?;
    Ok(std::fs::read(&output)?)
}

/// Writes `bytes` to `entry` whole or not at all (a temporary file renamed).
fn keep(entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = entry.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = entry.with_extension(format!("{}.partial", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, entry)
}

/// A folder of this process's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wasmlet-asyncify-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
