//! LLM API request model: recognises which provider API a decoded HTTP request
//! calls, and turns its body into an ordered list of text parts, each with its
//! JSON path and the role it plays (system prompt, user turn, tool result,
//! metadata…). Detection looks for host fingerprints in those parts.
//!
//! Two steps, both pure and panic-free on hostile input:
//!
//! 1. [`Catalog::recognise`] matches method, authority and path against the
//!    provider catalogue, a TOML file compiled in (`providers.toml`) that an
//!    operator may extend ([`Catalog::from_toml`], [`Catalog::with_overrides`]).
//! 2. [`parse_request`] reads the body with one vocabulary of field names that
//!    covers every supported API's documented shape (Anthropic, OpenAI chat /
//!    responses / completions, Gemini, DashScope, Bedrock, Ollama). One
//!    vocabulary rather than one parser per API because gateways and Bedrock
//!    `invoke` carry other vendors' shapes: reading by field name needs no
//!    guessing which shape a body is in. String leaves that no rule claims are
//!    still reported, as [`Role::Other`]: nothing the client sent is hidden
//!    from detection, except binary payloads (base64 images, audio, opaque
//!    signatures), which become a short marker.

mod body;
mod catalog;
mod json;
mod pattern;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use body::parse_request;
pub use catalog::{Catalog, CatalogError, EMBEDDED_CATALOG};

/// The request shape an endpoint speaks. Names in the catalogue file are the
/// snake_case forms shown on each variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Anthropic Messages (`anthropic_messages`): `/v1/messages`.
    AnthropicMessages,
    /// Anthropic token counting (`anthropic_count_tokens`): a Messages body that
    /// is counted, not answered.
    AnthropicCountTokens,
    /// Anthropic legacy Text Completions (`anthropic_complete`): `prompt`.
    AnthropicComplete,
    /// OpenAI Chat Completions and compatibles (`openai_chat`).
    #[serde(rename = "openai_chat")]
    OpenAiChat,
    /// OpenAI Responses (`openai_responses`): `instructions`, `input` items.
    #[serde(rename = "openai_responses")]
    OpenAiResponses,
    /// OpenAI legacy Completions (`openai_completions`): `prompt`, `suffix`.
    #[serde(rename = "openai_completions")]
    OpenAiCompletions,
    /// OpenAI Embeddings (`openai_embeddings`): `input`.
    #[serde(rename = "openai_embeddings")]
    OpenAiEmbeddings,
    /// Mistral fill-in-the-middle (`mistral_fim`): `prompt`, `suffix`.
    MistralFim,
    /// Gemini / Vertex AI `generateContent` and `streamGenerateContent`
    /// (`gemini_generate`).
    GeminiGenerate,
    /// Alibaba DashScope native text or multimodal generation
    /// (`dashscope_generation`): `input.messages` / `input.prompt`.
    #[serde(rename = "dashscope_generation")]
    DashScopeGeneration,
    /// AWS Bedrock `InvokeModel` (`bedrock_invoke`): the model vendor's own body.
    BedrockInvoke,
    /// AWS Bedrock Converse (`bedrock_converse`).
    BedrockConverse,
    /// Ollama `/api/chat` (`ollama_chat`).
    OllamaChat,
    /// Ollama `/api/generate` (`ollama_generate`).
    OllamaGenerate,
}

impl Api {
    /// Every API shape, for tools that enumerate them (fuzzing, listings).
    pub const ALL: &[Api] = &[
        Api::AnthropicMessages,
        Api::AnthropicCountTokens,
        Api::AnthropicComplete,
        Api::OpenAiChat,
        Api::OpenAiResponses,
        Api::OpenAiCompletions,
        Api::OpenAiEmbeddings,
        Api::MistralFim,
        Api::GeminiGenerate,
        Api::DashScopeGeneration,
        Api::BedrockInvoke,
        Api::BedrockConverse,
        Api::OllamaChat,
        Api::OllamaGenerate,
    ];
}

/// A recognised LLM API endpoint: what [`Catalog::recognise`] found for a
/// request line, and what [`parse_request`] needs to read its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Provider id from the catalogue (`anthropic`, `openai-compatible`).
    pub provider: String,
    /// Provider display name from the catalogue (`Anthropic`).
    pub provider_name: String,
    /// The request shape.
    pub api: Api,
    /// Model named in the path (`{model}` capture), percent-decoded: Gemini,
    /// Vertex AI, Azure deployments, Bedrock model ids and ARNs.
    pub model_from_path: Option<String>,
    /// Matched by path shape alone (the provider entry lists no hosts): a
    /// self-hosted or unknown OpenAI/Anthropic/Ollama-compatible server.
    pub self_hosted: bool,
    /// The endpoint always streams its answer (`streamGenerateContent`,
    /// `converse-stream`, `invoke-with-response-stream`), whatever the body says.
    pub streaming: bool,
}

impl Endpoint {
    /// An endpoint of shape `api` of the placeholder provider `example`: what a
    /// rule's examples (and tests) parse their bodies as.
    pub fn example(api: Api) -> Self {
        Self {
            provider: "example".into(),
            provider_name: "Example".into(),
            api,
            model_from_path: None,
            self_hosted: false,
            streaming: false,
        }
    }
}

/// What a request body says, normalised: the model, whether it streams, and
/// every piece of text in document order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LlmRequest {
    /// Provider id, from the endpoint.
    pub provider: String,
    /// Request shape, from the endpoint.
    pub api: Api,
    /// The body's top-level `model`, else the model named in the path.
    pub model: Option<String>,
    /// The body's `stream` flag; `Some(true)` for endpoints that always stream;
    /// `None` when neither says.
    pub stream: Option<bool>,
    /// Every text part, in document order.
    pub parts: Vec<TextPart>,
    /// Parts were dropped or cut because the request exceeded the bounds on
    /// part count (100 000) or total text (16 MiB).
    pub truncated: bool,
}

/// One string of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextPart {
    /// JSONPath of the string: `$.messages[0].content[1].text`; keys that are not
    /// identifiers in bracket form, `$.metadata['user-id']`. Inside a JSON
    /// document that a string holds, the string's path, `{json}`, then the path
    /// within the document: `$.metadata.user_id{json}.device_id`.
    pub path: String,
    /// What the text is to the model.
    pub role: Role,
    /// The text, or a short `[binary …]` marker for a binary payload.
    pub text: String,
}

impl TextPart {
    /// The path of the string of the body this part was read from: its own
    /// [`path`](Self::path), or, inside a JSON document that a string holds,
    /// the path of that string (`$.metadata.user_id` for
    /// `$.metadata.user_id{json}.device_id`).
    pub fn body_path(&self) -> &str {
        let len = body::body_string_len(&self.path);
        self.path.get(..len).unwrap_or(&self.path)
    }
}

/// The part a piece of text plays in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// System prompt or instructions (including OpenAI `developer` messages).
    System,
    /// A user turn or prompt.
    User,
    /// A prior assistant / model turn (including its reasoning).
    Assistant,
    /// The output of a tool, sent back to the model.
    ToolResult,
    /// A tool the model may call: name, description, parameter schema.
    ToolDefinition,
    /// A tool call the model made earlier: name and arguments.
    ToolCall,
    /// Request metadata: user ids, labels, cache keys.
    Metadata,
    /// Any other string the client sent.
    Other,
    /// An HTTP request header (detection inspects headers like body text; the
    /// part's path is the header name). Never produced by [`parse_request`].
    Header,
}

/// Why a body could not be read. Reasons never quote the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// Not JSON (or not UTF-8).
    #[error("malformed JSON body: {reason}")]
    Malformed {
        /// Kind and position of the error.
        reason: String,
    },
    /// Valid JSON, but not an object.
    #[error("request body is a JSON {found}, not an object")]
    NotAnObject {
        /// The JSON type found at the top level.
        found: &'static str,
    },
    /// Arrays and objects nested deeper than `limit`.
    #[error("request body nests deeper than {limit} levels")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
}
