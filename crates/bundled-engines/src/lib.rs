//! The engines that ship with ringfence, embedded as wasm component bytes.
//!
//! They are built from `engines/` by this crate's build script; `target/engines/<name>.wasm`
//! holds the same bytes for tools that want a file.
#![forbid(unsafe_code)]

/// One embedded engine.
#[derive(Debug, Clone, Copy)]
pub struct BundledEngine {
    /// The engine's name: `exec-allowlist`, `faulty`, ...
    pub name: &'static str,
    /// The component bytes.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/engines.rs"));

/// Looks up a bundled engine by name.
pub fn get(name: &str) -> Option<&'static BundledEngine> {
    ALL.iter().find(|engine| engine.name == name)
}

/// The `exec-allowlist` engine.
pub fn exec_allowlist() -> &'static [u8] {
    get("exec-allowlist").map(|e| e.wasm).unwrap_or_default()
}

/// The `faulty` engine.
pub fn faulty() -> &'static [u8] {
    get("faulty").map(|e| e.wasm).unwrap_or_default()
}

/// The `sigma` engine.
pub fn sigma() -> &'static [u8] {
    get("sigma").map(|e| e.wasm).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_engine_is_a_component() {
        for engine in super::ALL {
            // Component binaries carry layer 1 in the version field; core modules carry 0.
            assert_eq!(&engine.wasm[..4], b"\0asm", "{}", engine.name);
            assert_eq!(
                &engine.wasm[6..8],
                &[1, 0],
                "{} is not a component",
                engine.name
            );
        }
    }
}
