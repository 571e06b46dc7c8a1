//! `wit/hub.wit` is the one contract between host and guest. These tests fail
//! if the functions the host defines, or the SDK's imports and exports in a
//! built guest, differ from the WIT in name or core signature.

use crate::support::{guest, repo_root, runtime};

use std::collections::BTreeMap;

use wasmtime::ValType;
use wit_parser::abi::{AbiVariant, WasmType};
use wit_parser::{Resolve, WorldItem};

type Signature = (Vec<&'static str>, Vec<&'static str>);

fn wit_type(t: &WasmType) -> &'static str {
    match t {
        WasmType::I32 | WasmType::Pointer | WasmType::Length => "i32",
        WasmType::I64 | WasmType::PointerOrI64 => "i64",
        WasmType::F32 => "f32",
        WasmType::F64 => "f64",
    }
}

fn val_type(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        _ => "other",
    }
}

fn parser_type(t: &wasmparser::ValType) -> &'static str {
    match t {
        wasmparser::ValType::I32 => "i32",
        wasmparser::ValType::I64 => "i64",
        wasmparser::ValType::F32 => "f32",
        wasmparser::ValType::F64 => "f64",
        _ => "other",
    }
}

/// (imports of the hub interface, exports of the guest world) from the WIT.
fn wit_contract() -> (BTreeMap<String, Signature>, BTreeMap<String, Signature>) {
    wit_interface("hub")
}

/// (imports of `interface`, exports of the guest world) from the WIT.
fn wit_interface(interface: &str) -> (BTreeMap<String, Signature>, BTreeMap<String, Signature>) {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(repo_root().join("wit"))
        .expect("wit/ parses");
    let world = resolve
        .select_world(&[package], Some("guest"))
        .expect("world guest");
    let sig = |resolve: &Resolve, f, variant| {
        let s = resolve.wasm_signature(variant, f);
        assert!(!s.retptr && !s.indirect_params, "keep hub functions flat");
        (
            s.params.iter().map(wit_type).collect(),
            s.results.iter().map(wit_type).collect(),
        )
    };
    let hub = resolve
        .interfaces
        .iter()
        .find(|(_, i)| i.name.as_deref() == Some(interface))
        .expect("the interface")
        .1;
    let imports = hub
        .functions
        .values()
        .map(|f| (f.name.clone(), sig(&resolve, f, AbiVariant::GuestImport)))
        .collect();
    let exports = resolve.worlds[world]
        .exports
        .values()
        .filter_map(|item| match item {
            WorldItem::Function(f) => {
                Some((f.name.clone(), sig(&resolve, f, AbiVariant::GuestExport)))
            }
            _ => None,
        })
        .collect();
    (imports, exports)
}

#[test]
fn the_host_defines_exactly_the_wit_net_interface() {
    let (wit, _) = wit_interface("net");
    assert!(wit.len() >= 13, "{wit:?}");
    assert_eq!(host_functions(wasmlet_host::NET_MODULE), wit);
}

fn host_functions(module: &str) -> BTreeMap<String, Signature> {
    let runtime = runtime();
    let hub = wasmlet_host::Hub::new(&runtime);
    hub.defined_functions(module)
        .into_iter()
        .map(|(name, ty)| {
            (
                name,
                (
                    ty.params().map(|t| val_type(&t)).collect(),
                    ty.results().map(|t| val_type(&t)).collect(),
                ),
            )
        })
        .collect()
}

#[test]
fn the_host_defines_exactly_the_wit_hub_interface() {
    let (wit, _) = wit_contract();
    assert!(wit.len() >= 11, "{wit:?}");
    let runtime = runtime();
    let hub = wasmlet_host::Hub::new(&runtime);
    let host: BTreeMap<String, Signature> = hub
        .defined_functions(wasmlet_host::HUB_MODULE)
        .into_iter()
        .map(|(name, ty)| {
            (
                name,
                (
                    ty.params().map(|t| val_type(&t)).collect(),
                    ty.results().map(|t| val_type(&t)).collect(),
                ),
            )
        })
        .collect();
    assert_eq!(host, wit);
}

#[test]
fn a_guest_built_with_the_sdk_matches_the_wit() {
    let (imports, exports) = wit_contract();
    let bytes = std::fs::read(guest("bogus")).unwrap();
    let mut types = Vec::new();
    let mut funcs: Vec<u32> = Vec::new();
    let mut seen_imports = BTreeMap::new();
    let mut export_indices = BTreeMap::new();
    let mut imported_funcs = 0;
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload.unwrap() {
            wasmparser::Payload::TypeSection(s) => {
                for ty in s.into_iter_err_on_gc_types() {
                    let ty = ty.unwrap();
                    types.push((
                        ty.params().iter().map(parser_type).collect::<Vec<_>>(),
                        ty.results().iter().map(parser_type).collect::<Vec<_>>(),
                    ));
                }
            }
            wasmparser::Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    let import = import.unwrap();
                    if let wasmparser::TypeRef::Func(t) = import.ty {
                        imported_funcs += 1;
                        if import.module == wasmlet_host::HUB_MODULE {
                            seen_imports.insert(import.name.to_string(), types[t as usize].clone());
                        }
                    }
                }
            }
            wasmparser::Payload::FunctionSection(s) => {
                funcs.extend(s.into_iter().map(Result::unwrap))
            }
            wasmparser::Payload::ExportSection(s) => {
                for e in s {
                    let e = e.unwrap();
                    if exports.contains_key(e.name) {
                        export_indices.insert(e.name.to_string(), e.index);
                    }
                }
            }
            _ => {}
        }
    }
    // The bogus guest calls every hub function, through the SDK or directly.
    assert_eq!(seen_imports.len(), imports.len(), "{seen_imports:?}");
    for (name, sig) in &seen_imports {
        assert_eq!(Some(sig), imports.get(name), "import {name}");
    }
    assert_eq!(export_indices.len(), exports.len());
    for (name, index) in export_indices {
        let ty = funcs[(index - imported_funcs) as usize];
        assert_eq!(
            Some(&types[ty as usize]),
            exports.get(&name),
            "export {name}"
        );
    }
}
