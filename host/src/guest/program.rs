//! Loading a guest program: checking that a `.wasm` file is a wasmlet guest,
//! finding what the hub needs in it, and compiling it.
//!
//! A `wasm32-wasip1-threads` module keeps its shadow-stack pointer and TLS
//! base in two mutable globals that it does not export. Each green thread is
//! its own instance and needs both pointed at its own memory before it runs,
//! so the loader finds them through the name section and rewrites the module
//! (`rewrite`: entry points that set them, exact stack checks, green
//! futexes): guest authors need no special linker flags.

use std::borrow::Cow;

use wasmparser::{
    CompositeInnerType, DataKind, ExternalKind, KnownCustom, Name, Operator, Parser, Payload,
    TypeRef,
};
use wasmtime::error::Context;
use wasmtime::{bail, format_err, Result};

use crate::guest::rewrite::{self, Shape};
use crate::guest::{asyncify, module_cache};
use wasmtime::{Engine, Module};

/// The guest export that runs a spawned task (see `wit/hub.wit`).
pub(crate) const RUN_EXPORT: &str = "wasmlet-run";
/// The guest export that ends a killed, cancelled or trapped task.
pub(crate) const FINISH_EXPORT: &str = "wasmlet-finish";

/// A compiled guest program, ready to be started any number of times, on any
/// hub of the [`Runtime`](crate::Runtime) that loaded it.
#[derive(Clone)]
pub struct Program {
    pub(crate) module: Module,
    pub(crate) layout: std::sync::Arc<Layout>,
    /// The module the loader made (before compiling), for the compact
    /// model's transform, and that model's module, made on first use.
    compact: std::sync::Arc<CompactModule>,
}

/// A program's module for the compact model (see `guest::asyncify`).
struct CompactModule {
    bytes: Vec<u8>,
    module: std::sync::OnceLock<std::result::Result<Module, String>>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").finish_non_exhaustive()
    }
}

/// What the hub needs to know about a program to start green threads in it.
#[derive(Debug)]
pub(crate) struct Layout {
    /// The initial image of a green thread's thread-locals (`.tdata`, then
    /// zeros for `.tbss`).
    pub tls_image: Vec<u8>,
    /// Whether the program can spawn green threads (it exports the SDK's
    /// entry points and the loader found its stack pointer and TLS base).
    pub can_spawn: bool,
    /// Whether a green thread's worker (store and instance) may run the
    /// guest's next green thread: only if the stack pointer and TLS base
    /// are the instance's only mutable globals, which each green thread
    /// sets for itself.
    pub reuse_workers: bool,
    /// The function the stack check traps in (see `rewrite`), if the
    /// module was rewritten.
    pub overflow_func: Option<u32>,
    /// The main green thread's initial stack pointer: the top of the
    /// module's own shadow stack, which the linker places first in memory
    /// (`--stack-first`, Rust's default for wasm).
    pub main_stack_top: u32,
}

impl Program {
    /// Checks and compiles a guest program from the bytes of a `.wasm` file.
    /// Errors say what is wrong with the file and what to do about it.
    pub fn from_bytes(engine: &Engine, bytes: &[u8]) -> Result<Program> {
        let scan = scan(bytes)?;
        let (bytes, overflow_func): (Cow<[u8]>, _) = match (scan.stack_pointer, scan.tls_base) {
            (Some(sp), Some(tls)) => {
                let rewritten = rewrite::rewrite(bytes, &scan.shape, sp, tls)
                    .map_err(|e| format_err!("this file is not a valid WebAssembly module: {e}"))?;
                (Cow::Owned(rewritten.bytes), Some(rewritten.overflow_func))
            }
            _ => (Cow::Borrowed(bytes), None),
        };
        let module = module_cache::compile(
            engine,
            module_cache::cache_dir().as_deref(),
            &[b"fibers", &bytes],
            || Ok(bytes.to_vec()),
        )?;
        let compact = std::sync::Arc::new(CompactModule {
            bytes: bytes.into_owned(),
            module: std::sync::OnceLock::new(),
        });
        // The loader added `wasmlet:run-on` and `wasmlet:finish-on` if the
        // module has the SDK's two exports (see `rewrite`).
        let can_spawn = overflow_func.is_some()
            && scan.shape.run_func.is_some()
            && scan.shape.finish_func.is_some();
        // Globals other than the two each green thread sets for itself would
        // carry one green thread's state into the next on a reused worker.
        let own = [scan.stack_pointer, scan.tls_base];
        let reuse_workers = scan.mutable_globals.iter().all(|g| own.contains(&Some(*g)));
        Ok(Program {
            module,
            layout: std::sync::Arc::new(Layout {
                tls_image: scan.tls_image,
                can_spawn,
                reuse_workers,
                overflow_func,
                main_stack_top: scan.stack_pointer_init,
            }),
            compact,
        })
    }

    /// The program's module for the compact model: Asyncify applied (see
    /// `guest::asyncify`; `may_wait` says which imports may wait), from the
    /// disk cache (`module_cache`) or made and compiled now. Made once per
    /// program.
    ///
    /// # Errors
    /// If the program cannot spawn green threads the way the model needs
    /// (the loader found no stack pointer or TLS base), or the transform
    /// refused it; the message says why.
    pub(crate) fn compact_module(&self, may_wait: fn(&str, &str) -> bool) -> Result<Module> {
        let made = self.compact.module.get_or_init(|| {
            if self.layout.overflow_func.is_none() {
                return Err(
                    "the compact model needs the guest's shadow-stack pointer and TLS \
                            base, which the loader did not find (a module built without \
                            wasm32-wasip1-threads' layout); run it with fibers"
                        .to_string(),
                );
            }
            let engine = self.module.engine();
            let bytes = &self.compact.bytes;
            asyncify::Transform::new(bytes, may_wait)
                .and_then(|transform| {
                    let [version, imports] = transform.key_parts();
                    module_cache::compile(
                        engine,
                        module_cache::cache_dir().as_deref(),
                        &[b"compact", version, imports, bytes],
                        || transform.apply(bytes),
                    )
                })
                .map_err(|e| format!("{e:#}"))
        });
        made.clone().map_err(wasmtime::Error::msg)
    }

    /// Whether a green thread that ends normally hands its instance to the
    /// next green thread of its guest (much faster spawns). Only for modules
    /// whose mutable globals are the stack pointer and the TLS base, which
    /// every green thread sets for itself: another mutable global (in code
    /// from C or Zig, say) would carry one green thread's state into the
    /// next, so such modules get a fresh instance per green thread.
    pub fn reuses_instances(&self) -> bool {
        self.layout.reuse_workers
    }

    /// [`Program::from_bytes`] on a file.
    pub fn from_file(engine: &Engine, path: impl AsRef<std::path::Path>) -> Result<Program> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Program::from_bytes(engine, &bytes).with_context(|| format!("loading {}", path.display()))
    }
}

#[derive(Default)]
struct Scan {
    stack_pointer: Option<u32>,
    /// The stack pointer's initial value.
    stack_pointer_init: u32,
    tls_base: Option<u32>,
    tls_image: Vec<u8>,
    exports: Vec<String>,
    shape: Shape,
    /// Indices of the mutable globals the module defines.
    mutable_globals: Vec<u32>,
}

/// Reads what the hub needs from the module and rejects what it cannot run.
fn scan(bytes: &[u8]) -> Result<Scan> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        bail!(
            "this file is not a WebAssembly module (it does not start with \\0asm); \
             build a guest with `cargo build --release --target wasm32-wasip1-threads`"
        );
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        bail!(
            "this is a WebAssembly component, not a core module; wasmlet runs core modules \
             built with `cargo build --target wasm32-wasip1-threads`"
        );
    }
    let mut scan = Scan::default();
    let mut shared_memory_import = None;
    let mut defines_memory = false;
    let mut segments: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut segment_names: Vec<(u32, String)> = Vec::new();
    let mut global_names: Vec<(u32, String)> = Vec::new();
    let mut initial_values: Vec<(u32, u32)> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("this file is not a valid WebAssembly module")? {
            Payload::TypeSection(types) => {
                for group in types {
                    for ty in group.context("reading the type section")?.into_types() {
                        let params = match &ty.composite_type.inner {
                            CompositeInnerType::Func(f) => f.params().len() as u32,
                            _ => 0,
                        };
                        scan.shape.type_params.push(params);
                    }
                }
            }
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    let import = import.context("reading the import section")?;
                    match import.ty {
                        TypeRef::Memory(ty) => shared_memory_import = Some(ty.shared),
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => scan.shape.imported_funcs += 1,
                        TypeRef::Global(_) => scan.shape.globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(functions) => {
                for ty in functions {
                    scan.shape
                        .func_types
                        .push(ty.context("reading the function section")?);
                }
            }
            Payload::GlobalSection(globals) => {
                for global in globals {
                    let global = global.context("reading the global section")?;
                    let index = scan.shape.globals;
                    scan.shape.globals += 1;
                    if global.ty.mutable {
                        scan.mutable_globals.push(index);
                    }
                    let mut init = global.init_expr.get_operators_reader();
                    if let Ok(Operator::I32Const { value }) = init.read() {
                        initial_values.push((index, value as u32));
                    }
                }
            }
            Payload::MemorySection(memories) => defines_memory = memories.count() > 0,
            Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export.context("reading the export section")?;
                    if export.kind == ExternalKind::Func {
                        if export.name == RUN_EXPORT {
                            scan.shape.run_func = Some(export.index);
                        } else if export.name == FINISH_EXPORT {
                            scan.shape.finish_func = Some(export.index);
                        }
                    }
                    scan.exports.push(export.name.into());
                }
            }
            Payload::DataSection(data) => {
                for (index, segment) in data.into_iter().enumerate() {
                    let segment = segment.context("reading the data section")?;
                    if matches!(segment.kind, DataKind::Passive) {
                        segments.push((index as u32, segment.data.to_vec()));
                    }
                }
            }
            Payload::CustomSection(custom) => {
                if let KnownCustom::Name(names) = custom.as_known() {
                    for name in names {
                        // A malformed name section only costs us the names.
                        match name {
                            Ok(Name::Global(map)) => global_names.extend(
                                map.into_iter()
                                    .flatten()
                                    .map(|n| (n.index, n.name.to_string())),
                            ),
                            Ok(Name::Data(map)) => segment_names.extend(
                                map.into_iter()
                                    .flatten()
                                    .map(|n| (n.index, n.name.to_string())),
                            ),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    match shared_memory_import {
        Some(true) => {}
        _ if defines_memory || shared_memory_import == Some(false) => bail!(
            "this module has no shared memory: it was built for another target (such as \
             wasm32-wasip1); wasmlet guests share one memory between green threads, so build \
             with `cargo build --release --target wasm32-wasip1-threads`"
        ),
        _ => bail!(
            "this module imports no memory: build it with \
             `cargo build --release --target wasm32-wasip1-threads`"
        ),
    }
    if !scan.exports.iter().any(|e| e == "_start") {
        bail!(
            "this module has no `_start` export: wasmlet runs programs (a Rust binary with \
             `fn main`), not libraries"
        );
    }
    let global = |wanted: &str| {
        global_names
            .iter()
            .find(|(_, n)| n == wanted)
            .map(|(i, _)| *i)
    };
    scan.stack_pointer = global("__stack_pointer");
    scan.tls_base = global("__tls_base");
    if let Some(sp) = scan.stack_pointer {
        scan.stack_pointer_init = initial_values
            .iter()
            .find(|(i, _)| *i == sp)
            .map_or(0, |(_, v)| *v);
    }
    for (index, name) in &segment_names {
        if name == ".tdata" || name == ".tbss" {
            if let Some((_, data)) = segments.iter().find(|(i, _)| i == index) {
                scan.tls_image.extend_from_slice(data);
            }
        }
    }
    let uses_sdk = scan.exports.iter().any(|e| e == RUN_EXPORT);
    if uses_sdk && (scan.stack_pointer.is_none() || scan.tls_base.is_none()) {
        bail!(
            "this module's name section lacks the `__stack_pointer` / `__tls_base` globals, so \
             wasmlet cannot give green threads their own stacks; build without `strip = true` \
             (a plain release build keeps the name section)"
        );
    }
    Ok(scan)
}
