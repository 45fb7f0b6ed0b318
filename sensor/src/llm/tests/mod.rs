//! Tests of the LLM request model through its public API.

mod bodies;
mod catalog_file;
mod embedded;
mod props;
mod recognise;
