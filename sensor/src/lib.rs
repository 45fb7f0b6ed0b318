//! Telltale's user-space stages that need neither the kernel nor root: the
//! protocol decoders ([`decode`]), the LLM API request model ([`llm`]), the
//! host's facts ([`facts`]) and detection ([`detect`]).
//!
//! The `telltale` binary wires them behind the capture and connection stages; as a
//! library they are what the fuzz targets and the decode benchmark exercise.

pub mod alert;
#[cfg(feature = "binaries")]
pub mod binary;
pub mod decode;
#[cfg(feature = "sinks")]
pub mod deliver;
pub mod detect;
pub mod facts;
pub mod fuzzing;
pub mod inventory;
pub mod llm;
pub mod scan;
pub mod state;
