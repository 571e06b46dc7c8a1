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
//!   a 1.3 MB guest), and compiling its output slower still (about 10 s),
//!   so the compiled output is cached (`module_cache`), keyed by what it
//!   depends on: [`TRANSFORM_VERSION`], the imports named, the module's
//!   bytes and the engine's settings.
//!
//! Binaryen is C++ in this process, and some of its failures end the
//! process: so a module is first validated against exactly the features the
//! pass is run with, and refused with the reason if it uses another.

use std::path::PathBuf;

use wasm_opt::{Feature, OptimizationOptions, Pass};
use wasmparser::{Parser, Payload, TypeRef, Validator, WasmFeatures};
use wasmtime::{format_err, Result};

/// Bumped whenever the transform's output would change for the same input
/// (the pass's arguments, Binaryen's version): part of every cache key.
pub(crate) const TRANSFORM_VERSION: &str = "wasmlet-asyncify-2/binaryen-116";

/// Pages (64 KiB) of the memory the transform adds for the frames of the
/// green thread being unwound or rewound (see `unwind`): the most a thread
/// can save, 1 MiB.
pub(crate) const SCRATCH_PAGES: u32 = 16;

/// The name the scratch memory is exported under.
pub(crate) const SCRATCH_EXPORT: &str = "wasmlet:unwind-scratch";

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

/// The transform of one module: which of its imports may wait (checked
/// first, so a module the transform cannot take is refused before Binaryen
/// sees it).
pub(crate) struct Transform {
    imports: String,
}

impl Transform {
    /// Checks that the transform can take `bytes` and finds the imports
    /// `may_wait` accepts: the ones a green thread may unwind out of.
    ///
    /// # Errors
    /// If the module uses a feature the transform does not handle, or names
    /// an import it cannot pass to Binaryen; the message says why.
    pub(crate) fn new(bytes: &[u8], may_wait: fn(&str, &str) -> bool) -> Result<Transform> {
        Ok(Transform {
            imports: waiting_imports(bytes, may_wait)?,
        })
    }

    /// Everything the transform's output depends on besides the input
    /// bytes, for a cache key (see `module_cache`).
    pub(crate) fn key_parts(&self) -> [&[u8]; 2] {
        [TRANSFORM_VERSION.as_bytes(), self.imports.as_bytes()]
    }

    /// The module `bytes` with Asyncify applied. Slow on big modules, so
    /// its compiled output is cached (see `Program::compact_module`).
    ///
    /// # Errors
    /// If Binaryen fails on the module; the message says why.
    pub(crate) fn apply(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        run_pass(bytes, &self.imports)
    }
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
        .set_pass_arg("asyncify-relocatable", "")
        // Frames are saved in a memory of their own (see `unwind`).
        .set_pass_arg("asyncify-in-secondary-memory", "")
        .set_pass_arg("asyncify-secondary-memory-size", &SCRATCH_PAGES.to_string());
    // The output has the scratch memory as a second memory.
    options.enable_feature(Feature::MultiMemory);
    options
        .run(&input, &output)
        .map_err(|e| format_err!("the compact model's transform failed on this module: {e}"))?;
    export_scratch(&std::fs::read(&output)?)
}

/// The transformed module with its scratch memory (the one memory it
/// defines; the guest's own is imported) exported as [`SCRATCH_EXPORT`],
/// for the host to copy frames in and out. Every other section is kept as
/// it is.
fn export_scratch(bytes: &[u8]) -> Result<Vec<u8>> {
    use wasm_encoder::{ExportKind, ExportSection, RawSection};
    let mut imported_memories = 0;
    let mut defined_memories = 0;
    let mut exports = ExportSection::new();
    let mut sections: Vec<(u8, std::ops::Range<usize>)> = Vec::new();
    let mut export_at = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        match &payload {
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    if matches!(import?.ty, TypeRef::Memory(_)) {
                        imported_memories += 1;
                    }
                }
            }
            Payload::MemorySection(reader) => defined_memories += reader.count(),
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export?;
                    let kind = ExportKind::from(export.kind);
                    exports.export(export.name, kind, export.index);
                }
                export_at = Some(sections.len());
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range));
        }
    }
    if defined_memories != 1 {
        return Err(format_err!(
            "the compact model's transform made {defined_memories} memories, not one scratch \
             memory; run this module with fibers"
        ));
    }
    exports.export(SCRATCH_EXPORT, ExportKind::Memory, imported_memories);
    let mut module = wasm_encoder::Module::new();
    let mut exported = false;
    for (i, (id, range)) in sections.iter().enumerate() {
        // The export section goes where it was, or before the first
        // section that must follow it (start, element, code, data...).
        let export_here = export_at == Some(i) || (export_at.is_none() && matches!(id, 8..=12));
        if export_here && !exported {
            module.section(&exports);
            exported = true;
        }
        if export_at != Some(i) {
            module.section(&RawSection {
                id: *id,
                data: &bytes[range.clone()],
            });
        }
    }
    if !exported {
        module.section(&exports);
    }
    Ok(module.finish())
}

/// A folder of this process's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wasmlet-asyncify-{}-{n}", std::process::id()));
        // Made new and private (not `create_dir_all`): another user cannot
        // have put a folder or a link there for Binaryen to write through.
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
