//! Telltale's user-space stages that need neither the kernel nor root: the
//! protocol decoders ([`decode`]) and the LLM API request model ([`llm`]).
//!
//! The `telltale` binary wires them behind the capture and connection stages; as a
//! library they are what the fuzz targets and the decode benchmark exercise.

pub mod decode;
pub mod fuzzing;
pub mod llm;
