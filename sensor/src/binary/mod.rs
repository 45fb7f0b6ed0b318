//! Analyses of program files that need neither the kernel nor root: where the
//! TLS functions are in binaries whose symbols do not say (Go's `.gopclntab`;
//! statically linked, stripped OpenSSL and BoringSSL). The capture stage of
//! the `telltale` binary attaches probes where these say; as a library they
//! are what the `binary` fuzz target exercises with hostile files.

pub mod golang;
pub mod stripped;
