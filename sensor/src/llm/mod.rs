//! LLM API request model (placeholder, being written).
