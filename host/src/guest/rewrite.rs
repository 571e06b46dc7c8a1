//! The loader's rewrite of a guest module: an exact shadow-stack check, entry
//! points that set the globals the hub sets per green thread, and green
//! futexes.
//!
//! ## Green futexes
//!
//! `memory.atomic.wait32/64` parks the OS thread that runs it, and wasmtime
//! has no hook to make it yield: one green thread waiting on a contended std
//! lock would stop every green thread of every guest on the hub. So the
//! rewrite turns each `memory.atomic.wait32`, `memory.atomic.wait64` and
//! `memory.atomic.notify` into a call of the hub's `wait32`, `wait64` and
//! `notify` (added as imports), with the instruction's static offset as one
//! more argument: the operands are already in place, and the hub checks and
//! traps as the instruction would. Adding imports shifts every defined
//! function's index by three; the rewrite renumbers all references (calls,
//! `ref.func`, exports, elements, the start function, the name section).
//!
//! ## Stack checks
//!
//! Every green thread's shadow stack is a slot of the guest's one memory,
//! under its TLS block and above the previous slot (see `shadow_stack`):
//!
//! ```text
//!   lower addresses                                        higher addresses
//!   ───────────────┬──────────┬─────────────────────────────┬───────────┬───
//!   previous slot  │ red zone │      shadow stack ◄── grows │ TLS block │ ...
//!   ───────────────┴──────────┴─────────────────────────────┴───────────┴───
//!                  ▲          ▲                             ▲
//!               bottom      limit                          top (initial SP)
//! ```
//!
//! A frame that ran past `bottom` would write over another green thread's
//! TLS block and live frames, and a canary checked later
//! misses a frame that jumps over it. So every `global.set` of
//! `__stack_pointer` (a frame's prologue, epilogue and `alloca`) is rewritten
//! to check the new value first:
//!
//! ```text
//!   local.tee $scratch
//!   global.get $limit   i32.sub
//!   global.get $span    i32.gt_u        ;; (new - limit) >u (top - limit)
//!   if  call $overflow  end             ;; $overflow: `unreachable`
//!   local.get $scratch
//!   global.set $__stack_pointer
//! ```
//!
//! The hub starts a green thread on a worker through two more functions the
//! loader adds, `wasmlet:run-on(task, sp, tls, limit, span)` and
//! `wasmlet:finish-on(task, how, error, sp, tls, limit, span)`, which set the
//! four globals and call the SDK's `wasmlet-run` / `wasmlet-finish`: four
//! `global.set` instructions instead of four calls of wasmtime's
//! `Global::set`, which type-checks each (that cost a spawn 8%).
//!
//! One unsigned compare catches both a stack pointer below `limit` and one
//! that wrapped around below 0. The trap comes before the frame writes
//! anything, in `$overflow`, which is how the hub tells it from other traps.
//! `limit` sits [`RED_ZONE`] above the bottom because LLVM lets a leaf
//! function with a frame of up to 128 bytes use them below the stack pointer
//! without moving it. Until the hub sets them, `limit` is 0 and `span` is
//! `u32::MAX`: no check.

use wasm_encoder::reencode::{utils, Error, Reencode};
use wasm_encoder::{ConstExpr, ExportKind, Function, GlobalType, Instruction, ValType};
use wasmparser::Operator;

/// Bytes a leaf function may use below the stack pointer (LLVM's
/// `RedZoneSize` for WebAssembly).
pub(crate) const RED_ZONE: u32 = 128;

/// Export name the loader gives the `__stack_pointer` global.
pub(crate) const STACK_POINTER_EXPORT: &str = "wasmlet:stack-pointer";
/// Export name the loader gives the `__tls_base` global.
pub(crate) const TLS_BASE_EXPORT: &str = "wasmlet:tls-base";
/// Export name of the added global holding the lowest stack pointer allowed.
pub(crate) const STACK_LIMIT_EXPORT: &str = "wasmlet:stack-limit";
/// Export name of the added global holding `top - limit`.
pub(crate) const STACK_SPAN_EXPORT: &str = "wasmlet:stack-span";
/// Export name of the added `run-on(task, sp, tls, limit, span)`.
pub(crate) const RUN_ON_EXPORT: &str = "wasmlet:run-on";
/// Export name of the added `finish-on(task, how, error, sp, tls, limit, span)`.
pub(crate) const FINISH_ON_EXPORT: &str = "wasmlet:finish-on";

/// The futex imports the rewrite adds, after the module's own imports.
const FUTEX_IMPORTS: u32 = 3;

/// What the rewrite needs to know of the module (read by the loader's scan).
#[derive(Debug, Default)]
pub(crate) struct Shape {
    /// Parameter count of each function type, by type index (0 for other
    /// types).
    pub type_params: Vec<u32>,
    /// Functions imported (they come first in the function index space).
    pub imported_funcs: u32,
    /// Type index of each function the module defines.
    pub func_types: Vec<u32>,
    /// Globals, imported and defined.
    pub globals: u32,
    /// The SDK's `wasmlet-run` and `wasmlet-finish` exports, if present.
    pub run_func: Option<u32>,
    pub finish_func: Option<u32>,
}

/// The rewritten module and the index of its overflow function.
pub(crate) struct Rewritten {
    pub bytes: Vec<u8>,
    pub overflow_func: u32,
}

/// The maximum (in 64 KiB pages) that Rust's `wasm32-wasip1-threads`
/// target declares by default: 1 GiB.
const TOOLCHAIN_MAX_PAGES: u64 = 16_384;

/// All of wasm32's address space, in 64 KiB pages: 4 GiB.
const WASM32_MAX_PAGES: u64 = 65_536;

/// Rewrites `bytes`: exports `sp` and `tls` (global indices), adds the
/// stack check, and lets a memory of the toolchain's default maximum grow
/// to 4 GiB. Errors only on a module the scan accepted but the rewrite
/// cannot read, which the caller reports as malformed.
pub(crate) fn rewrite(
    bytes: &[u8],
    shape: &Shape,
    sp: u32,
    tls: u32,
) -> Result<Rewritten, Error<RewriteError>> {
    let overflow_func = shape.imported_funcs + FUTEX_IMPORTS + shape.func_types.len() as u32;
    let types = shape.type_params.len() as u32;
    let entries = shape.run_func.zip(shape.finish_func);
    let mut check = StackCheck {
        shape,
        sp,
        tls,
        limit: shape.globals,
        span: shape.globals + 1,
        overflow_func,
        new_types: types,
        entries,
        next_func: 0,
    };
    let mut module = wasm_encoder::Module::new();
    check.parse_core_module(&mut module, wasmparser::Parser::new(0), bytes)?;
    Ok(Rewritten {
        bytes: module.finish(),
        overflow_func,
    })
}

impl StackCheck<'_> {
    /// The call that replaces a futex instruction: its offset as the last
    /// argument, then the `which`-th futex import.
    fn futex(
        &mut self,
        f: &mut Function,
        memarg: wasmparser::MemArg,
        which: u32,
    ) -> Result<(), Error<RewriteError>> {
        let offset = u32::try_from(memarg.offset)
            .map_err(|_| Error::UserError(RewriteError::Offset(memarg.offset)))?;
        if memarg.memory != 0 {
            return Err(Error::UserError(RewriteError::Memory(memarg.memory)));
        }
        f.instruction(&Instruction::I32Const(offset as i32));
        f.instruction(&Instruction::Call(self.shape.imported_funcs + which));
        Ok(())
    }
}

/// Why the rewrite refused a module (scan accepted it).
#[derive(Debug)]
pub(crate) enum RewriteError {
    /// A futex instruction with an offset past 32 bits (memory64).
    Offset(u64),
    /// A futex instruction on a memory other than the guest's one.
    Memory(u32),
}

impl std::fmt::Display for RewriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RewriteError::Offset(o) => write!(f, "an atomic wait or notify with offset {o}"),
            RewriteError::Memory(m) => write!(f, "an atomic wait or notify on memory {m}"),
        }
    }
}

impl std::error::Error for RewriteError {}

struct StackCheck<'a> {
    shape: &'a Shape,
    sp: u32,
    tls: u32,
    limit: u32,
    span: u32,
    overflow_func: u32,
    /// Index of the first added type: `() -> ()`, then the two entries',
    /// then `wait32`'s, `wait64`'s and `notify`'s.
    new_types: u32,
    /// The SDK's `wasmlet-run` and `wasmlet-finish`, if both exist: then
    /// `run-on` and `finish-on` are added after the overflow function.
    entries: Option<(u32, u32)>,
    /// The defined function whose body comes next.
    next_func: usize,
}

impl Reencode for StackCheck<'_> {
    type Error = RewriteError;

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), Error<RewriteError>> {
        utils::parse_type_section(self, types, section)?;
        types.ty().function([], []);
        types.ty().function([ValType::I32; 5], []);
        types.ty().function([ValType::I32; 7], []);
        let (i32, i64) = (ValType::I32, ValType::I64);
        types.ty().function([i32, i32, i64, i32], [i32]);
        types.ty().function([i32, i64, i64, i32], [i32]);
        types.ty().function([i32, i32, i32], [i32]);
        Ok(())
    }

    /// The guest's shared memory may grow to all of wasm32's 4 GiB where
    /// the module declares the toolchain's default maximum (1 GiB): every
    /// green thread's shadow stack is a slot of that memory, so the
    /// default held only about 16,000 of them. A maximum the guest's author
    /// chose otherwise is kept; `GuestOptions::max_memory` still applies.
    fn memory_type(
        &mut self,
        ty: wasmparser::MemoryType,
    ) -> Result<wasm_encoder::MemoryType, Error<RewriteError>> {
        let mut ty = utils::memory_type(self, ty);
        let default_maximum = ty.shared
            && !ty.memory64
            && ty.page_size_log2.is_none()
            && ty.maximum == Some(TOOLCHAIN_MAX_PAGES);
        if default_maximum {
            ty.maximum = Some(WASM32_MAX_PAGES);
        }
        Ok(ty)
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), Error<RewriteError>> {
        utils::parse_import_section(self, imports, section)?;
        for (i, name) in ["wait32", "wait64", "notify"].into_iter().enumerate() {
            let ty = wasm_encoder::EntityType::Function(self.new_types + 3 + i as u32);
            imports.import(crate::abi::HUB_MODULE, name, ty);
        }
        Ok(())
    }

    fn function_index(&mut self, func: u32) -> Result<u32, Error<RewriteError>> {
        // The futex imports come right after the module's own.
        Ok(if func >= self.shape.imported_funcs {
            func + FUTEX_IMPORTS
        } else {
            func
        })
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), Error<RewriteError>> {
        utils::parse_function_section(self, functions, section)?;
        functions.function(self.new_types);
        if self.entries.is_some() {
            functions.function(self.new_types + 1);
            functions.function(self.new_types + 2);
        }
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), Error<RewriteError>> {
        utils::parse_global_section(self, globals, section)?;
        let ty = GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        };
        globals.global(ty, &ConstExpr::i32_const(0));
        globals.global(ty, &ConstExpr::i32_const(-1));
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), Error<RewriteError>> {
        utils::parse_export_section(self, exports, section)?;
        exports.export(STACK_POINTER_EXPORT, ExportKind::Global, self.sp);
        exports.export(TLS_BASE_EXPORT, ExportKind::Global, self.tls);
        exports.export(STACK_LIMIT_EXPORT, ExportKind::Global, self.limit);
        exports.export(STACK_SPAN_EXPORT, ExportKind::Global, self.span);
        if self.entries.is_some() {
            exports.export(RUN_ON_EXPORT, ExportKind::Func, self.overflow_func + 1);
            exports.export(FINISH_ON_EXPORT, ExportKind::Func, self.overflow_func + 2);
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), Error<RewriteError>> {
        utils::parse_code_section(self, code, section)?;
        let mut overflow = Function::new([]);
        overflow.instruction(&Instruction::Unreachable);
        overflow.instruction(&Instruction::End);
        code.function(&overflow);
        if let Some((run, finish)) = self.entries {
            let (run, finish) = (self.function_index(run)?, self.function_index(finish)?);
            // (task, sp, tls, limit, span) and (task, how, error, sp, tls,
            // limit, span): set the globals, then call the entry with the
            // leading arguments.
            for (entry, args) in [(run, 1), (finish, 3)] {
                let mut f = Function::new([]);
                let globals = [self.sp, self.tls, self.limit, self.span];
                for (i, global) in globals.into_iter().enumerate() {
                    f.instruction(&Instruction::LocalGet(args + i as u32));
                    f.instruction(&Instruction::GlobalSet(global));
                }
                for arg in 0..args {
                    f.instruction(&Instruction::LocalGet(arg));
                }
                f.instruction(&Instruction::Call(entry));
                f.instruction(&Instruction::End);
                code.function(&f);
            }
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), Error<RewriteError>> {
        let ty = self.shape.func_types.get(self.next_func).copied();
        self.next_func += 1;
        let params = ty
            .and_then(|ty| self.shape.type_params.get(ty as usize))
            .copied()
            .unwrap_or(0);
        let mut locals = Vec::new();
        let mut count = params;
        for pair in func.get_locals_reader()? {
            let (n, ty) = pair?;
            count = count.saturating_add(n);
            locals.push((n, self.val_type(ty)?));
        }
        let scratch = count;
        locals.push((1, ValType::I32));
        let mut f = Function::new(locals);
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            match reader.read()? {
                Operator::GlobalSet { global_index } if global_index == self.sp => {
                    for instruction in [
                        Instruction::LocalTee(scratch),
                        Instruction::GlobalGet(self.limit),
                        Instruction::I32Sub,
                        Instruction::GlobalGet(self.span),
                        Instruction::I32GtU,
                        Instruction::If(wasm_encoder::BlockType::Empty),
                        Instruction::Call(self.overflow_func),
                        Instruction::End,
                        Instruction::LocalGet(scratch),
                        Instruction::GlobalSet(self.sp),
                    ] {
                        f.instruction(&instruction);
                    }
                }
                Operator::MemoryAtomicWait32 { memarg } => self.futex(&mut f, memarg, 0)?,
                Operator::MemoryAtomicWait64 { memarg } => self.futex(&mut f, memarg, 1)?,
                Operator::MemoryAtomicNotify { memarg } => self.futex(&mut f, memarg, 2)?,
                op => {
                    f.instruction(&self.instruction(op)?);
                }
            }
        }
        code.function(&f);
        Ok(())
    }
}
