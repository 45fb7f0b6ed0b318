//! Request body → ordered text parts.
//!
//! The walker reads a body by field name, with one vocabulary covering every
//! supported API (see the table on [`Walker::request`]). Where a rule
//! understands a string as structure — a message `role`, a block `type`, a
//! `media_type`, the top-level `model` — that string is not text. Every other
//! string leaf becomes a [`TextPart`]: the role its rule gives, or
//! [`Role::Other`] where no rule speaks.
//!
//! Clients also send JSON documents inside strings: Anthropic's
//! `metadata.user_id` as `{"device_id":…,"session_id":…}`, OpenAI's tool call
//! `arguments`, tool results that are JSON. A string that is such a document
//! is walked as structure, its leaves reported under the string's path with
//! [`EMBEDDED_JSON`] appended (`$.metadata.user_id{json}.device_id`) and with
//! the role of the string itself; see [`Walker::string`] for the bounds.

use std::fmt::Write as _;

use super::json::{self, Node};
use super::{Endpoint, LlmError, LlmRequest, Role, TextPart};

/// Most parts one request yields; a request with more is marked truncated.
const MAX_PARTS: usize = 100_000;
/// Most text bytes one request yields; a request with more is marked truncated.
const MAX_TEXT_BYTES: usize = 16 << 20;

/// Appended to the path of a string that holds a JSON document, before the
/// paths of the document's own members: `$.metadata.user_id{json}.device_id`.
/// A member named `{json}` is spelt `['{json}']`, so the two never collide.
const EMBEDDED_JSON: &str = "{json}";
/// Longest string (without surrounding whitespace) read as a JSON document;
/// longer ones stay text.
const MAX_EMBEDDED_BYTES: usize = 64 << 10;
/// Most documents nested in one another through strings that are read as
/// structure (`…{json}.a{json}.b` is two); a string deeper down stays text.
const MAX_EMBEDDED_LEVELS: usize = 4;

/// Members whose string value describes content rather than being content
/// (`{"type": "image", "source": {"type": "base64", "media_type": …}}`).
const CONTENT_STRUCTURE: &[&str] = &[
    "type",
    "media_type",
    "mime_type",
    "mimeType",
    "detail",
    "format",
];
/// Members that only steer prompt caching (`{"type": "ephemeral"}`).
const CACHE_MARKERS: &[&str] = &["cache_control", "cachePoint"];
/// Bookkeeping members of tool calls and results (ids tying them together,
/// status flags): reported as [`Role::Other`], not as the call or result.
const ID_KEYS: &[&str] = &[
    "id",
    "call_id",
    "tool_use_id",
    "toolUseId",
    "tool_call_id",
    "status",
    "is_error",
];
/// JSON Schema type names, structure inside tool parameter schemas.
const SCHEMA_TYPES: &[&str] = &[
    "string", "object", "array", "number", "integer", "boolean", "null",
];

/// Members that hold binary data when their value is long base64.
const BINARY_KEYS: &[&str] = &[
    "data",
    "bytes",
    "file_data",
    "image",
    "images",
    "audio",
    "b64_json",
    "signature",
    "encrypted_content",
    "thoughtSignature",
    "thought_signature",
    "redactedContent",
];
/// Shortest string under a [`BINARY_KEYS`] member taken for base64 data; shorter
/// ones are kept, since they cost little and could be text.
const MIN_BINARY_LEN: usize = 64;

/// Role names as the APIs spell them (compared ignoring ASCII case, for Cohere's
/// `USER`/`CHATBOT` on Bedrock).
const ROLES: &[(&str, Role)] = &[
    ("system", Role::System),
    ("developer", Role::System),
    ("user", Role::User),
    ("human", Role::User),
    ("assistant", Role::Assistant),
    ("model", Role::Assistant),
    ("bot", Role::Assistant),
    ("chatbot", Role::Assistant),
    ("tool", Role::ToolResult),
    ("function", Role::ToolResult),
    ("ipython", Role::ToolResult),
];

/// Reads a request body for `endpoint` into an [`LlmRequest`].
///
/// Errors only when the body is not a JSON object, or nests deeper than the
/// limit; any object is read, fields of unexpected types included (their
/// strings become [`Role::Other`] parts).
pub fn parse_request(endpoint: &Endpoint, body: &[u8]) -> Result<LlmRequest, LlmError> {
    let root = json::parse(body)?;
    let Node::Object(members) = &root else {
        return Err(LlmError::NotAnObject { found: root.kind() });
    };
    let mut walker = Walker::default();
    walker.request(members);
    let model = root
        .str_field("model")
        .map(str::to_owned)
        .or_else(|| endpoint.model_from_path.clone());
    let stream = match root.field("stream") {
        _ if endpoint.streaming => Some(true),
        Some(Node::Bool(b)) => Some(*b),
        _ => None,
    };
    Ok(LlmRequest {
        provider: endpoint.provider.clone(),
        api: endpoint.api,
        model,
        stream,
        parts: walker.parts,
        truncated: walker.truncated,
    })
}

/// How a plain walk over a subtree treats structural members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaves {
    /// Every string is text (metadata, tool arguments, unknown fields).
    All,
    /// Inside a content block: skip [`CONTENT_STRUCTURE`] and cache markers.
    Content,
    /// Inside a tool definition: skip JSON Schema `type` names and cache markers.
    Schema,
}

impl Leaves {
    /// Whether member `key` with `value` is structure in this mode.
    fn skips(self, key: &str, value: &Node) -> bool {
        let text = match value {
            Node::String(s) => s.as_str(),
            _ => return self != Self::All && CACHE_MARKERS.contains(&key),
        };
        match self {
            Self::All => false,
            Self::Content => CONTENT_STRUCTURE.contains(&key),
            Self::Schema => key == "type" && SCHEMA_TYPES.contains(&text),
        }
    }
}

/// Whether an item is a tool call or a tool result, judged by its `type`.
#[derive(Debug, Clone, Copy)]
enum ToolItem {
    Call,
    Result,
}

impl ToolItem {
    /// Anthropic `tool_use`/`server_tool_use`/`*_tool_result`, OpenAI Responses
    /// `function_call`/`*_call`/`*_call_output`.
    fn of(node: &Node) -> Option<Self> {
        let kind = node.str_field("type")?;
        if kind.ends_with("tool_result") || kind.ends_with("_call_output") {
            Some(Self::Result)
        } else if kind.ends_with("tool_use") || kind.ends_with("_call") {
            Some(Self::Call)
        } else {
            None
        }
    }
}

/// Collects parts while walking one body.
#[derive(Debug, Default)]
struct Walker {
    /// JSONPath of the node being visited.
    path: String,
    /// Arrays and objects around the node being visited, counting those of
    /// the documents it is embedded in.
    depth: usize,
    /// JSON documents in strings around the node being visited.
    embedded: usize,
    parts: Vec<TextPart>,
    text_bytes: usize,
    truncated: bool,
}

impl Walker {
    /// Visits member `key` of an object: extends the path while `f` runs.
    fn member(&mut self, key: &str, f: impl FnOnce(&mut Self)) {
        let mark = self.path.len();
        push_key(&mut self.path, key);
        self.depth += 1;
        f(self);
        self.depth -= 1;
        self.path.truncate(mark);
    }

    /// Visits item `index` of an array: extends the path while `f` runs.
    fn item(&mut self, index: usize, f: impl FnOnce(&mut Self)) {
        let mark = self.path.len();
        // Writing to a String cannot fail.
        let _ = write!(self.path, "[{index}]");
        self.depth += 1;
        f(self);
        self.depth -= 1;
        self.path.truncate(mark);
    }

    /// Visits the items of an array with `f`; anything else is walked as
    /// `fallback` text.
    fn each(&mut self, node: &Node, fallback: Role, mut f: impl FnMut(&mut Self, &Node)) {
        let Node::Array(items) = node else {
            return self.leaves(node, fallback, None, Leaves::All);
        };
        for (i, item) in items.iter().enumerate() {
            self.item(i, |w| f(w, item));
        }
    }

    /// Visits the members of an object with `f`; anything else is walked as
    /// `fallback` text.
    fn members(&mut self, node: &Node, fallback: Role, mut f: impl FnMut(&mut Self, &str, &Node)) {
        let Node::Object(members) = node else {
            return self.leaves(node, fallback, None, Leaves::All);
        };
        for (key, value) in members {
            self.member(key, |w| f(w, key, value));
        }
    }

    /// Every string under `node` as `role`. `key` is the member holding `node`
    /// (kept for array items, so `images: ["…"]` is known to be binary).
    fn leaves(&mut self, node: &Node, role: Role, key: Option<&str>, mode: Leaves) {
        match node {
            Node::Scalar | Node::Bool(_) => {}
            Node::String(text) => self.string(role, key, text),
            Node::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.item(i, |w| w.leaves(item, role, key, mode));
                }
            }
            Node::Object(members) => {
                for (k, v) in members {
                    if !mode.skips(k, v) {
                        self.member(k, |w| w.leaves(v, role, Some(k), mode));
                    }
                }
            }
        }
    }

    /// One string leaf as `role`: the leaves of the JSON document it holds,
    /// when it holds one, else the string itself.
    ///
    /// A string holds a document when, without surrounding JSON whitespace, it
    /// is framed by `{`…`}` or `[`…`]`, is at most [`MAX_EMBEDDED_BYTES`]
    /// long, sits within [`MAX_EMBEDDED_LEVELS`] documents in strings, and
    /// parses (lone surrogates replaced) with its nesting and that of the
    /// documents around it together within [`json::MAX_DEPTH`]. Every string
    /// of the document is text, whatever its member's name: it is the
    /// client's data, not the API's structure. A document without any text
    /// (`[1, 2]`, `{}`) stays the string it came in, so that nothing the
    /// client sent disappears.
    fn string(&mut self, role: Role, key: Option<&str>, text: &str) {
        let Some(document) = self.embedded_document(text) else {
            return self.emit(role, key, text);
        };
        let (mark, before) = (self.path.len(), self.parts.len());
        self.path.push_str(EMBEDDED_JSON);
        self.embedded += 1;
        self.leaves(&document, role, key, Leaves::All);
        self.embedded -= 1;
        self.path.truncate(mark);
        if self.parts.len() == before {
            self.emit(role, key, text);
        }
    }

    /// The JSON array or object `text` holds, within the bounds of
    /// [`Self::string`].
    fn embedded_document(&self, text: &str) -> Option<Node> {
        if self.truncated || self.embedded >= MAX_EMBEDDED_LEVELS {
            return None;
        }
        let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        let framed = matches!(
            (trimmed.as_bytes().first(), trimmed.as_bytes().last()),
            (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
        );
        if !framed || trimmed.len() > MAX_EMBEDDED_BYTES {
            return None;
        }
        let room = json::MAX_DEPTH.checked_sub(self.depth)?;
        json::parse_within(trimmed.as_bytes(), room)
            .ok()
            .filter(|node| matches!(node, Node::Array(_) | Node::Object(_)))
    }

    /// Records one string at the current path, within the bounds.
    fn emit(&mut self, role: Role, key: Option<&str>, text: &str) {
        if text.is_empty() || self.truncated {
            return;
        }
        if self.parts.len() >= MAX_PARTS {
            self.truncated = true;
            return;
        }
        let mut text = binary_marker(key, text).unwrap_or_else(|| text.to_owned());
        let room = MAX_TEXT_BYTES - self.text_bytes;
        if text.len() > room {
            text.truncate(floor_char_boundary(&text, room));
            self.truncated = true;
        }
        self.text_bytes += text.len();
        self.parts.push(TextPart {
            path: format!("${}", self.path),
            role,
            text,
        });
    }

    /// The members of a request object (the body, or DashScope's `input` and
    /// `parameters`). The vocabulary, by API:
    ///
    /// | member | role | from |
    /// |---|---|---|
    /// | `system`, `instructions`, `preamble` | System | Anthropic, Ollama, Converse; Responses; Cohere |
    /// | `systemInstruction` | System (forced) | Gemini |
    /// | `messages`, `chat_history` | per message `role` | all chat APIs |
    /// | `contents` | per `role`, default user | Gemini |
    /// | `input` | user text, Responses items, or a nested request | Responses, Embeddings, DashScope |
    /// | `prompt`, `suffix`, `inputText`, `message` | User | completions, FIM, Ollama, Bedrock vendors |
    /// | `tools`, `functions`, `toolConfig.tools` | ToolDefinition | all |
    /// | `metadata`, `user`, `prompt_cache_key`, `safety_identifier`, `labels`, `requestMetadata` | Metadata | Anthropic, OpenAI, Vertex, Converse |
    /// | `history` | user / bot turns | DashScope |
    /// | anything else | Other | |
    fn request(&mut self, members: &[(String, Node)]) {
        for (key, value) in members {
            self.member(key, |w| w.request_member(key, value));
        }
    }

    fn request_member(&mut self, key: &str, value: &Node) {
        match key {
            "model" | "anthropic_version" | "schemaVersion" if matches!(value, Node::String(_)) => {
            }
            "system" | "instructions" | "preamble" => self.content(value, Role::System),
            "systemInstruction" | "system_instruction" => self.message(value, Role::System, true),
            "messages" | "chat_history" => {
                self.each(value, Role::Other, |w, m| w.message(m, Role::Other, false));
            }
            "contents" => self.each(value, Role::User, |w, m| w.message(m, Role::User, false)),
            "input" => self.input(value),
            "prompt" | "suffix" | "inputText" | "message" => {
                let role = if matches!(value, Node::Object(_)) {
                    Role::Other
                } else {
                    Role::User
                };
                self.leaves(value, role, Some(key), Leaves::All);
            }
            "images" => self.leaves(value, Role::User, Some(key), Leaves::All),
            "tools" | "functions" => self.each(value, Role::ToolDefinition, Self::tool_definition),
            "toolConfig" | "tool_config" => self.members(value, Role::Other, |w, k, v| match k {
                "tools" => w.each(v, Role::ToolDefinition, Self::tool_definition),
                _ => w.leaves(v, Role::Other, Some(k), Leaves::All),
            }),
            "metadata" | "user" | "prompt_cache_key" | "safety_identifier" | "labels"
            | "requestMetadata" => {
                self.leaves(value, Role::Metadata, Some(key), Leaves::All);
            }
            "parameters" => match value {
                Node::Object(members) => self.request(members),
                _ => self.leaves(value, Role::Other, Some(key), Leaves::All),
            },
            "history" => self.each(value, Role::Other, |w, turn| {
                w.members(turn, Role::Other, |w, k, v| {
                    let role = match k {
                        "user" => Role::User,
                        "bot" => Role::Assistant,
                        _ => Role::Other,
                    };
                    w.leaves(v, role, Some(k), Leaves::All);
                });
            }),
            _ => self.leaves(value, Role::Other, Some(key), Leaves::All),
        }
    }

    /// `input`: user text (Responses, Embeddings), Responses items, or
    /// DashScope's nested request object.
    fn input(&mut self, value: &Node) {
        match value {
            Node::Object(members) => self.request(members),
            Node::Array(_) => self.each(value, Role::User, |w, item| {
                w.message(item, Role::User, false)
            }),
            _ => self.leaves(value, Role::User, None, Leaves::All),
        }
    }

    /// One tool definition: everything in it but its `type` tag and cache marker.
    fn tool_definition(&mut self, tool: &Node) {
        let Node::Object(members) = tool else {
            return self.leaves(tool, Role::ToolDefinition, None, Leaves::All);
        };
        for (key, value) in members {
            if (key == "type" && matches!(value, Node::String(_)))
                || CACHE_MARKERS.contains(&key.as_str())
            {
                continue;
            }
            self.member(key, |w| {
                w.leaves(value, Role::ToolDefinition, Some(key), Leaves::Schema)
            });
        }
    }

    /// A message, Gemini content, or Responses input item. Its `role` decides
    /// the role of its content (`default` when absent or unknown; always
    /// `default` when `force`d, as for Gemini's `systemInstruction`, which some
    /// SDKs send with `"role": "user"`).
    fn message(&mut self, node: &Node, default: Role, force: bool) {
        let Node::Object(members) = node else {
            return self.leaves(node, default, None, Leaves::All);
        };
        if let Some(kind) = ToolItem::of(node) {
            return self.tool_item(members, kind);
        }
        let known = node.str_field("role").and_then(role_of);
        let role = match known {
            _ if force => default,
            Some(role) => role,
            // A Responses `reasoning` item has no role; it is the model's.
            None if node.str_field("type") == Some("reasoning") => Role::Assistant,
            None => default,
        };
        for (key, value) in members {
            self.member(key, |w| w.message_member(key, value, role, known.is_some()));
        }
    }

    fn message_member(&mut self, key: &str, value: &Node, role: Role, role_known: bool) {
        let is_string = matches!(value, Node::String(_));
        match key {
            // Understood, so structure; an unknown role name is reported as text.
            "role" if role_known => {}
            "type" if is_string => {}
            "content" | "parts" | "message" => self.content(value, role),
            "tool_calls" => self.each(value, Role::ToolCall, Self::tool_call),
            "function_call" => self.tool_call(value),
            "thinking" | "reasoning_content" | "reasoning" | "refusal" | "summary" | "images" => {
                self.leaves(value, role, Some(key), Leaves::Content);
            }
            _ => self.leaves(value, Role::Other, Some(key), Leaves::All),
        }
    }

    /// Message content: a string, one block, or a list of blocks.
    fn content(&mut self, value: &Node, role: Role) {
        match value {
            Node::Array(_) => self.each(value, role, |w, b| w.block(b, role)),
            Node::Object(_) => self.block(value, role),
            _ => self.leaves(value, role, None, Leaves::All),
        }
    }

    /// One content block. Typed blocks (Anthropic, OpenAI) and keyed unions
    /// (Gemini parts, Converse blocks) both land here.
    fn block(&mut self, node: &Node, role: Role) {
        let Node::Object(members) = node else {
            return self.leaves(node, role, None, Leaves::All);
        };
        if let Some(kind) = ToolItem::of(node) {
            return self.tool_item(members, kind);
        }
        for (key, value) in members {
            self.member(key, |w| w.block_member(key, value, role));
        }
    }

    fn block_member(&mut self, key: &str, value: &Node, role: Role) {
        match key {
            "toolUse" | "functionCall" | "function_call" | "executableCode" | "executable_code" => {
                self.tool_call(value);
            }
            "toolResult"
            | "functionResponse"
            | "function_response"
            | "codeExecutionResult"
            | "code_execution_result" => self.tool_result(value),
            _ if ID_KEYS.contains(&key) => self.leaves(value, Role::Other, Some(key), Leaves::All),
            _ if Leaves::Content.skips(key, value) => {}
            _ => self.leaves(value, role, Some(key), Leaves::Content),
        }
    }

    fn tool_item(&mut self, members: &[(String, Node)], kind: ToolItem) {
        match kind {
            ToolItem::Call => self.tool_call_members(members),
            ToolItem::Result => self.tool_result_members(members),
        }
    }

    /// A tool call: `tool_use` block, OpenAI `tool_calls[]` entry, Gemini
    /// `functionCall`, Converse `toolUse`, Responses `*_call` item.
    fn tool_call(&mut self, node: &Node) {
        match node {
            Node::Object(members) => self.tool_call_members(members),
            _ => self.leaves(node, Role::ToolCall, None, Leaves::All),
        }
    }

    fn tool_call_members(&mut self, members: &[(String, Node)]) {
        for (key, value) in members {
            self.member(key, |w| match key.as_str() {
                "type" if matches!(value, Node::String(_)) => {}
                k if CACHE_MARKERS.contains(&k) => {}
                k if ID_KEYS.contains(&k) => w.leaves(value, Role::Other, Some(k), Leaves::All),
                // Responses `mcp_call` carries its own result.
                "output" => w.content(value, Role::ToolResult),
                k => w.leaves(value, Role::ToolCall, Some(k), Leaves::All),
            });
        }
    }

    /// A tool result: `tool_result` block, Gemini `functionResponse`, Converse
    /// `toolResult`, Responses `*_call_output` item.
    fn tool_result(&mut self, node: &Node) {
        match node {
            Node::Object(members) => self.tool_result_members(members),
            _ => self.leaves(node, Role::ToolResult, None, Leaves::All),
        }
    }

    fn tool_result_members(&mut self, members: &[(String, Node)]) {
        for (key, value) in members {
            self.member(key, |w| match key.as_str() {
                "type" if matches!(value, Node::String(_)) => {}
                k if CACHE_MARKERS.contains(&k) => {}
                k if ID_KEYS.contains(&k) => w.leaves(value, Role::Other, Some(k), Leaves::All),
                "content" | "output" => w.content(value, Role::ToolResult),
                k => w.leaves(value, Role::ToolResult, Some(k), Leaves::All),
            });
        }
    }
}

/// The role a message's `role` names, if known.
fn role_of(name: &str) -> Option<Role> {
    ROLES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, role)| role)
}

/// Appends `.key`, or `['key']` when the key is not an identifier.
fn push_key(path: &mut String, key: &str) {
    let mut chars = key.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        path.push('.');
        path.push_str(key);
        return;
    }
    path.push_str("['");
    for c in key.chars() {
        if matches!(c, '\'' | '\\') {
            path.push('\\');
        }
        path.push(c);
    }
    path.push_str("']");
}

/// The length of the start of `path` that names a string of the body itself:
/// all of it, or up to its first [`EMBEDDED_JSON`] mark when the path leads
/// into a JSON document held by that string. A mark inside a bracketed key
/// (`['{json}']`) is the key's text, not a mark.
pub(crate) fn body_string_len(path: &str) -> usize {
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"['") {
            // Skip the key: `\` escapes the next character, `']` ends it.
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"']") {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 2;
        } else if b[i..].starts_with(EMBEDDED_JSON.as_bytes()) {
            return i;
        } else {
            i += 1;
        }
    }
    path.len()
}

/// A short marker replacing a binary payload: a base64 `data:` URL anywhere, or
/// long base64 text under a member named like binary data. `None` for text.
fn binary_marker(key: Option<&str>, text: &str) -> Option<String> {
    if let Some((meta, payload)) = data_url(text) {
        return Some(format!("[binary data: {meta}, {} bytes]", payload.len()));
    }
    let binary_key = key.is_some_and(|k| BINARY_KEYS.contains(&k));
    (binary_key && text.len() >= MIN_BINARY_LEN && is_base64(text))
        .then(|| format!("[binary data: base64, {} bytes]", text.len()))
}

/// Splits `data:<media type>;base64,<payload>`; plain (non-base64) data URLs
/// are text and stay as they are.
fn data_url(text: &str) -> Option<(&str, &str)> {
    const MAX_META: usize = 100;
    let head = text.get(..5)?;
    if !head.eq_ignore_ascii_case("data:") {
        return None;
    }
    let (meta, payload) = text[5..].split_once(',')?;
    let media = meta.get(..meta.len().checked_sub(7)?)?;
    let base64 = meta.get(media.len()..)?.eq_ignore_ascii_case(";base64");
    (base64 && meta.len() <= MAX_META).then_some((meta, payload))
}

/// Standard or URL-safe base64, possibly wrapped in lines.
fn is_base64(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/=-_\r\n".contains(&b))
}

/// The largest index ≤ `at` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(keys: &[&str]) -> String {
        let mut path = String::new();
        for key in keys {
            push_key(&mut path, key);
        }
        path
    }

    #[test]
    fn keys_that_are_not_identifiers_use_brackets() {
        assert_eq!(path_of(&["metadata", "user_id"]), ".metadata.user_id");
        assert_eq!(
            path_of(&["a-b", "1x", "", "it's", "a\\b"]),
            r"['a-b']['1x']['']['it\'s']['a\\b']"
        );
        assert_eq!(path_of(&["_x1", "é"]), "._x1['é']");
    }

    #[test]
    fn body_strings_end_at_the_first_embedded_document() {
        fn len(path: &str) -> &str {
            &path[..body_string_len(path)]
        }
        assert_eq!(len("$.metadata.user_id"), "$.metadata.user_id");
        assert_eq!(
            len("$.metadata.user_id{json}.device_id"),
            "$.metadata.user_id"
        );
        assert_eq!(len("$.a[0]{json}.x{json}.y"), "$.a[0]");
        assert_eq!(len("$.a['{json}'].b"), "$.a['{json}'].b");
        assert_eq!(len(r"$.a['x\'{json}\\']{json}[1]"), r"$.a['x\'{json}\\']");
        assert_eq!(len("$['é{json}']{json}.k"), "$['é{json}']");
        // Unterminated keys and stray escapes end the scan without panicking.
        assert_eq!(len("$['{json}"), "$['{json}");
        assert_eq!(len("$['\\"), "$['\\");
        assert_eq!(len(""), "");
    }

    #[test]
    fn binary_payloads_become_markers() {
        let b64 = "iVBORw0KGgo".repeat(10);
        assert_eq!(
            binary_marker(None, &format!("data:image/png;base64,{b64}")).as_deref(),
            Some("[binary data: image/png;base64, 110 bytes]")
        );
        assert_eq!(
            binary_marker(Some("data"), &b64).as_deref(),
            Some("[binary data: base64, 110 bytes]")
        );
        // Text under a binary-sounding key, short base64, plain data URLs: text.
        assert_eq!(binary_marker(Some("data"), &"host name ".repeat(10)), None);
        assert_eq!(binary_marker(Some("data"), "aGVsbG8="), None);
        assert_eq!(binary_marker(Some("text"), &b64), None);
        assert_eq!(binary_marker(None, "data:text/plain,hello"), None);
        assert_eq!(binary_marker(None, "data:"), None);
        assert_eq!(binary_marker(None, "dätä:x"), None);
    }

    #[test]
    fn char_boundaries() {
        assert_eq!(floor_char_boundary("aé", 2), 1);
        assert_eq!(floor_char_boundary("aé", 9), 3);
    }
}
