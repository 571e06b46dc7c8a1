//! The on-disk cache of what loading a guest makes: compiled modules (both
//! models) and the compact model's transformed modules (`asyncify`).
//!
//! Compiling is most of a guest's start: 0.1 s for a small plugin, 1.3 s for
//! the 1.3 MB realistic guest, 11 s for that guest's transformed module.
//! A cache hit loads the compiled code instead (milliseconds).
//!
//! # Trust
//!
//! A compiled entry is machine code that wasmtime maps and runs without
//! checking it (`Module::deserialize` is `unsafe` for that reason), so an
//! entry is used only if all of these hold, and is otherwise ignored and
//! made again:
//! - the folder is this user's own and nobody else may write to it (no
//!   group or other write bit), as `ssh` demands of `~/.ssh`; an entry is
//!   this user's own file too;
//! - the entry starts with [`MAGIC`] and the SHA-256 of the rest, and the
//!   rest hashes to it (a torn or corrupted file);
//! - its name is the hash of everything the code depends on: the input
//!   bytes, the loader's version, and the engine's compilation settings
//!   (`Engine::precompile_compatibility_hash`), and wasmtime's own header
//!   check agrees.
//!
//! Entries are written whole or not at all (a temporary file renamed over
//! the entry), so concurrent loaders never see half an entry.
//!
//! # Where
//!
//! `$WASMLET_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmlet`, else
//! `~/.cache/wasmlet`. `WASMLET_CACHE_DIR=off` keeps nothing.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::error::Context;
use wasmtime::{Engine, Module, Result};

/// Bumped whenever the loader's output for the same input would change:
/// part of every compiled entry's key.
pub(crate) const LOADER_VERSION: &str = "wasmlet-loader-1";

/// The first bytes of a compiled entry.
const MAGIC: &[u8; 16] = b"wasmlet-module1\n";

/// Where entries are kept (see the module docs); None keeps nothing.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WASMLET_CACHE_DIR") {
        if dir == "off" || dir.is_empty() {
            return None;
        }
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("wasmlet"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("wasmlet"))
}

/// The SHA-256 of `parts` (each with its length, so no two lists of parts
/// hash alike), in hex: an entry's name.
pub(crate) fn key(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `entry` if the cache may be trusted with it (see the module docs'
/// first rule); None if it is missing or may not be trusted.
pub(crate) fn read(entry: &Path) -> Option<Vec<u8>> {
    let dir = entry.parent()?;
    if std::fs::symlink_metadata(entry).is_err() {
        return None;
    }
    if !owned_and_private(dir) || !owned_and_private(entry) {
        tracing::warn!(
            "ignoring the cache entry {}: it or its folder is not this user's own or others \
             may write to it",
            entry.display()
        );
        return None;
    }
    std::fs::read(entry).ok()
}

#[cfg(unix)]
fn owned_and_private(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0,
        Err(_) => false,
    }
}

#[cfg(not(unix))]
fn owned_and_private(_: &Path) -> bool {
    // No portable owner check: compiled entries are not used.
    false
}

/// Writes `bytes` to `entry` whole or not at all (a temporary file renamed),
/// making the folder (this user's only) if needed.
pub(crate) fn keep(entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = entry.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let partial = entry.with_extension(format!("{}-{n}.partial", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&partial)
        .and_then(|mut file| std::io::Write::write_all(&mut file, bytes));
    match written.and_then(|()| std::fs::rename(&partial, entry)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// The module compiled from the bytes `make` returns, or loaded from the
/// cache in `dir` if it holds a trusted entry for `key_parts` (everything
/// those bytes depend on; `make` is not called then). A compiled module is
/// kept there for the next load.
///
/// # Errors
/// What `make` or compiling returns. A cache that cannot be read or
/// written is not an error: the module is compiled.
pub(crate) fn compile(
    engine: &Engine,
    dir: Option<&Path>,
    key_parts: &[&[u8]],
    make: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Module> {
    let entry = dir.map(|dir| dir.join(format!("module-{}.cwasm", entry_key(engine, key_parts))));
    if let Some(entry) = &entry {
        if let Some(module) = load(engine, entry) {
            return Ok(module);
        }
    }
    let bytes = make()?;
    let module = Module::new(engine, &bytes).context("compiling the guest module")?;
    if let Some(entry) = &entry {
        let kept = module
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|code| keep(entry, &seal(&code)));
        if let Err(e) = kept {
            tracing::debug!("could not cache the compiled module: {e}");
        }
    }
    Ok(module)
}

fn entry_key(engine: &Engine, key_parts: &[&[u8]]) -> String {
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let settings = settings.finish().to_le_bytes();
    let mut parts = vec![LOADER_VERSION.as_bytes(), &settings[..]];
    parts.extend_from_slice(key_parts);
    key(&parts)
}

/// `code` behind the magic and its checksum.
fn seal(code: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(MAGIC.len() + 32 + code.len());
    sealed.extend_from_slice(MAGIC);
    sealed.extend_from_slice(&Sha256::digest(code));
    sealed.extend_from_slice(code);
    sealed
}

/// The code in `sealed` if its magic and checksum hold.
fn unseal(sealed: &[u8]) -> Option<&[u8]> {
    let rest = sealed.strip_prefix(MAGIC)?;
    if rest.len() < 32 {
        return None;
    }
    let (sum, code) = rest.split_at(32);
    (Sha256::digest(code).as_slice() == sum).then_some(code)
}

fn load(engine: &Engine, entry: &Path) -> Option<Module> {
    let sealed = read(entry)?;
    let Some(code) = unseal(&sealed) else {
        tracing::warn!("ignoring a damaged cache entry {}", entry.display());
        return None;
    };
    // SAFETY: `Module::deserialize` runs the code it is given unchecked.
    // This code was written by `compile` above from `Module::serialize` on
    // an engine with the same settings (they are in the entry's name), in a
    // folder and file only this user may write (`read`), and it hashes to
    // the checksum written with it, so it is that output, whole.
    match unsafe { Module::deserialize(engine, code) } {
        Ok(module) => Some(module),
        Err(e) => {
            tracing::warn!("ignoring the cache entry {}: {e:#}", entry.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(module (func (export "two") (result i32) i32.const 2))`
    const TWO: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
        0x03, 0x02, 0x01, 0x00, // func 0 has type 0
        0x07, 0x07, 0x01, 0x03, b't', b'w', b'o', 0x00, 0x00, // export "two"
        0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x02, 0x0b, // i32.const 2
    ];

    fn private_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wasmlet-module-cache-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn two(engine: &Engine, module: &Module) -> i32 {
        let mut store = wasmtime::Store::new(engine, ());
        let instance = wasmtime::Instance::new(&mut store, module, &[]).unwrap();
        let f = instance
            .get_typed_func::<(), i32>(&mut store, "two")
            .unwrap();
        f.call(&mut store, ()).unwrap()
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect()
    }

    #[test]
    fn a_second_load_uses_the_entry_without_making_the_bytes() {
        let dir = private_dir("hit");
        let engine = Engine::default();
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Ok(TWO.to_vec())
        };
        let first = compile(&engine, Some(&dir), &[b"two"], make).unwrap();
        let second = compile(&engine, Some(&dir), &[b"two"], make).unwrap();
        assert_eq!(made.get(), 1, "the second load compiled again");
        assert_eq!((two(&engine, &first), two(&engine, &second)), (2, 2));
        // Another key is another entry.
        compile(&engine, Some(&dir), &[b"other"], make).unwrap();
        assert_eq!(made.get(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_ignored_and_made_again() {
        let dir = private_dir("damaged");
        let engine = Engine::default();
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Ok(TWO.to_vec())
        };
        compile(&engine, Some(&dir), &[b"two"], make).unwrap();
        let entry = entries(&dir).pop().unwrap();

        // One flipped byte in the code.
        let mut bytes = std::fs::read(&entry).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&entry, &bytes).unwrap();
        let module = compile(&engine, Some(&dir), &[b"two"], make).unwrap();
        assert_eq!((made.get(), two(&engine, &module)), (2, 2));

        // Torn: only half written.
        let bytes = std::fs::read(&entry).unwrap();
        std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
        compile(&engine, Some(&dir), &[b"two"], make).unwrap();
        assert_eq!(made.get(), 3);

        // Not ours: anything else under the entry's name.
        std::fs::write(&entry, b"#!/bin/sh\n").unwrap();
        compile(&engine, Some(&dir), &[b"two"], make).unwrap();
        assert_eq!(made.get(), 4);

        // A folder others may write to is not trusted, however good the entry.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            compile(&engine, Some(&dir), &[b"two"], make).unwrap();
            assert_eq!(made.get(), 5);
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            compile(&engine, Some(&dir), &[b"two"], make).unwrap();
            assert_eq!(
                made.get(),
                5,
                "the entry kept in the private folder was not used"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_engine_with_other_settings_does_not_use_the_entry() {
        let dir = private_dir("settings");
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Ok(TWO.to_vec())
        };
        compile(&Engine::default(), Some(&dir), &[b"two"], make).unwrap();
        let mut config = wasmtime::Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        let other = Engine::new(&config).unwrap();
        let module = compile(&other, Some(&dir), &[b"two"], make).unwrap();
        assert_eq!((made.get(), two(&other, &module)), (2, 2));
        assert_eq!(entries(&dir).len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
