//! Request bodies in each provider's documented shape, read end to end:
//! recognition, then exact paths, roles and order of the parts.

use crate::llm::{Api, Catalog, Endpoint, LlmError, LlmRequest, Role, parse_request};

use Role::{Assistant, Metadata, Other, System, ToolCall, ToolDefinition, ToolResult, User};

/// 120 bytes of base64, as an image or signature would be (only longer).
const B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg+/AAAAAAAAAAAAAAAAAAAA=";

fn endpoint(authority: &str, target: &str) -> Endpoint {
    Catalog::embedded()
        .recognise("POST", Some(authority), target)
        .unwrap_or_else(|| panic!("{authority} {target} not recognised"))
}

fn parse(authority: &str, target: &str, body: &str) -> LlmRequest {
    let body = body.replace("<B64>", B64);
    parse_request(&endpoint(authority, target), body.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn marker(len: usize) -> String {
    format!("[binary data: base64, {len} bytes]")
}

/// Asserts the parts exactly, in order.
fn assert_parts(request: &LlmRequest, expected: &[(&str, Role, &str)]) {
    let got: Vec<(&str, Role, &str)> = request
        .parts
        .iter()
        .map(|p| (p.path.as_str(), p.role, p.text.as_str()))
        .collect();
    if got != expected {
        let lines: Vec<String> = got.iter().map(|p| format!("{p:?}")).collect();
        panic!("parts differ; got:\n{}", lines.join("\n"));
    }
    assert!(!request.truncated);
}

#[test]
fn anthropic_messages_from_a_coding_assistant() {
    let body = r#"{
      "model": "claude-sonnet-4-5-20250929",
      "max_tokens": 32000,
      "system": [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "<env>\nWorking directory: /home/alice/src/telltale\nPlatform: linux\nOS Version: Linux 6.8.0-45-generic\n</env>", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
      ],
      "messages": [
        {"role": "user", "content": [
          {"type": "text", "text": "<system-reminder>timezone: Europe/Berlin</system-reminder>"},
          {"type": "text", "text": "why does the build fail?"}
        ]},
        {"role": "assistant", "content": [
          {"type": "thinking", "thinking": "Run the build first.", "signature": "<B64>"},
          {"type": "text", "text": "Running cargo build."},
          {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "cargo build", "timeout": 120000}}
        ]},
        {"role": "user", "content": [
          {"type": "tool_result", "tool_use_id": "toolu_01", "is_error": true,
           "content": [{"type": "text", "text": "error: linker `cc` not found"}]},
          {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "<B64>"}},
          {"type": "document", "title": "notes.txt", "source": {"type": "text", "media_type": "text/plain", "data": "build host: ci-runner-4"}}
        ]}
      ],
      "tools": [{
        "name": "Bash",
        "description": "Executes a bash command",
        "input_schema": {"type": "object", "$schema": "http://json-schema.org/draft-07/schema#",
          "properties": {"command": {"type": "string", "description": "The command to run"}},
          "required": ["command"]},
        "cache_control": {"type": "ephemeral"}
      }],
      "metadata": {"user_id": "{\"device_id\":\"5c1e0f\",\"account_uuid\":\"a1b2\",\"session_id\":\"9f8e\"}"},
      "temperature": 1,
      "stream": true
    }"#;
    let request = parse("api.anthropic.com", "/v1/messages?beta=true", body);
    assert_eq!(request.provider, "anthropic");
    assert_eq!(request.api, Api::AnthropicMessages);
    assert_eq!(request.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(request.stream, Some(true));
    let signature = marker(B64.len());
    assert_parts(
        &request,
        &[
            (
                "$.system[0].text",
                System,
                "You are Claude Code, Anthropic's official CLI for Claude.",
            ),
            (
                "$.system[1].text",
                System,
                "<env>\nWorking directory: /home/alice/src/telltale\nPlatform: linux\nOS Version: Linux 6.8.0-45-generic\n</env>",
            ),
            (
                "$.messages[0].content[0].text",
                User,
                "<system-reminder>timezone: Europe/Berlin</system-reminder>",
            ),
            (
                "$.messages[0].content[1].text",
                User,
                "why does the build fail?",
            ),
            (
                "$.messages[1].content[0].thinking",
                Assistant,
                "Run the build first.",
            ),
            ("$.messages[1].content[0].signature", Assistant, &signature),
            (
                "$.messages[1].content[1].text",
                Assistant,
                "Running cargo build.",
            ),
            ("$.messages[1].content[2].id", Other, "toolu_01"),
            ("$.messages[1].content[2].name", ToolCall, "Bash"),
            (
                "$.messages[1].content[2].input.command",
                ToolCall,
                "cargo build",
            ),
            ("$.messages[2].content[0].tool_use_id", Other, "toolu_01"),
            (
                "$.messages[2].content[0].content[0].text",
                ToolResult,
                "error: linker `cc` not found",
            ),
            (
                "$.messages[2].content[1].source.data",
                User,
                &marker(B64.len()),
            ),
            ("$.messages[2].content[2].title", User, "notes.txt"),
            (
                "$.messages[2].content[2].source.data",
                User,
                "build host: ci-runner-4",
            ),
            ("$.tools[0].name", ToolDefinition, "Bash"),
            (
                "$.tools[0].description",
                ToolDefinition,
                "Executes a bash command",
            ),
            (
                "$.tools[0].input_schema['$schema']",
                ToolDefinition,
                "http://json-schema.org/draft-07/schema#",
            ),
            (
                "$.tools[0].input_schema.properties.command.description",
                ToolDefinition,
                "The command to run",
            ),
            (
                "$.tools[0].input_schema.required[0]",
                ToolDefinition,
                "command",
            ),
            ("$.metadata.user_id{json}.device_id", Metadata, "5c1e0f"),
            ("$.metadata.user_id{json}.account_uuid", Metadata, "a1b2"),
            ("$.metadata.user_id{json}.session_id", Metadata, "9f8e"),
        ],
    );
}

#[test]
fn anthropic_system_string_and_legacy_complete() {
    let request = parse(
        "api.anthropic.com",
        "/v1/messages/count_tokens",
        r#"{"model":"claude-opus-4-1","system":"Host: web-3","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(request.api, Api::AnthropicCountTokens);
    assert_eq!(request.stream, None);
    assert_parts(
        &request,
        &[
            ("$.system", System, "Host: web-3"),
            ("$.messages[0].content", User, "hi"),
        ],
    );

    let request = parse(
        "api.anthropic.com",
        "/v1/complete",
        r#"{"model":"claude-2.1","prompt":"\n\nHuman: Hello from dev-box\n\nAssistant:","max_tokens_to_sample":256,
            "stop_sequences":["\n\nHuman:"],"metadata":{"user_id":"u-1"},"stream":false}"#,
    );
    assert_eq!(request.api, Api::AnthropicComplete);
    assert_eq!(request.stream, Some(false));
    assert_parts(
        &request,
        &[
            (
                "$.prompt",
                User,
                "\n\nHuman: Hello from dev-box\n\nAssistant:",
            ),
            ("$.stop_sequences[0]", Other, "\n\nHuman:"),
            ("$.metadata.user_id", Metadata, "u-1"),
        ],
    );
}

#[test]
fn openai_chat_with_tool_calls() {
    let body = r#"{
      "model": "gpt-4o",
      "messages": [
        {"role": "developer", "content": "You are a helpful assistant. The user's timezone is Europe/Berlin."},
        {"role": "user", "content": [
          {"type": "text", "text": "What's my hostname?"},
          {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,<B64>", "detail": "low"}}
        ]},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "call_abc", "type": "function", "function": {"name": "run_shell", "arguments": "{\"cmd\":\"hostname\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "build-box-17.corp.example"}
      ],
      "tools": [{"type": "function", "function": {
        "name": "run_shell", "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string", "description": "Command line"}}, "required": ["cmd"]}
      }}],
      "tool_choice": "auto",
      "user": "alice@corp.example",
      "prompt_cache_key": "session-42",
      "safety_identifier": "u-9f8e",
      "metadata": {"team": "infra"},
      "stop": ["\n\nUser:"],
      "stream": false
    }"#;
    let request = parse("api.openai.com", "/v1/chat/completions", body);
    assert_eq!(
        (request.model.as_deref(), request.stream),
        (Some("gpt-4o"), Some(false))
    );
    let image = format!("[binary data: image/jpeg;base64, {} bytes]", B64.len());
    assert_parts(
        &request,
        &[
            (
                "$.messages[0].content",
                System,
                "You are a helpful assistant. The user's timezone is Europe/Berlin.",
            ),
            ("$.messages[1].content[0].text", User, "What's my hostname?"),
            ("$.messages[1].content[1].image_url.url", User, &image),
            ("$.messages[2].tool_calls[0].id", Other, "call_abc"),
            (
                "$.messages[2].tool_calls[0].function.name",
                ToolCall,
                "run_shell",
            ),
            (
                "$.messages[2].tool_calls[0].function.arguments{json}.cmd",
                ToolCall,
                "hostname",
            ),
            ("$.messages[3].tool_call_id", Other, "call_abc"),
            (
                "$.messages[3].content",
                ToolResult,
                "build-box-17.corp.example",
            ),
            ("$.tools[0].function.name", ToolDefinition, "run_shell"),
            (
                "$.tools[0].function.description",
                ToolDefinition,
                "Run a shell command",
            ),
            (
                "$.tools[0].function.parameters.properties.cmd.description",
                ToolDefinition,
                "Command line",
            ),
            (
                "$.tools[0].function.parameters.required[0]",
                ToolDefinition,
                "cmd",
            ),
            ("$.tool_choice", Other, "auto"),
            ("$.user", Metadata, "alice@corp.example"),
            ("$.prompt_cache_key", Metadata, "session-42"),
            ("$.safety_identifier", Metadata, "u-9f8e"),
            ("$.metadata.team", Metadata, "infra"),
            ("$.stop[0]", Other, "\n\nUser:"),
        ],
    );
}

#[test]
fn openai_responses_from_a_coding_agent() {
    let body = r#"{
      "model": "gpt-5-codex",
      "instructions": "You are Codex, running as a coding agent in the Codex CLI on a user's computer.",
      "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text",
          "text": "<environment_context>\n  <cwd>/home/alice/src/app</cwd>\n  <shell>zsh</shell>\n</environment_context>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Listing files."}], "encrypted_content": "<B64>"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": "{\"command\":[\"ls\",\"-la\"]}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "total 8\ndrwxr-xr-x alice staff ."},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Here are the files."}]}
      ],
      "tools": [{"type": "function", "name": "shell", "description": "Runs a shell command", "strict": false,
        "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}, "required": ["command"]}}],
      "tool_choice": "auto",
      "parallel_tool_calls": false,
      "reasoning": {"effort": "medium", "summary": "auto"},
      "store": false,
      "stream": true,
      "include": ["reasoning.encrypted_content"],
      "prompt_cache_key": "0199a0c2-7f1e",
      "metadata": {"origin": "codex_cli"}
    }"#;
    let request = parse("chatgpt.com", "/backend-api/codex/responses", body);
    assert_eq!(
        (request.provider.as_str(), request.api),
        ("chatgpt", Api::OpenAiResponses)
    );
    assert_eq!(request.stream, Some(true));
    assert_parts(
        &request,
        &[
            (
                "$.instructions",
                System,
                "You are Codex, running as a coding agent in the Codex CLI on a user's computer.",
            ),
            (
                "$.input[0].content[0].text",
                User,
                "<environment_context>\n  <cwd>/home/alice/src/app</cwd>\n  <shell>zsh</shell>\n</environment_context>",
            ),
            ("$.input[1].content[0].text", User, "list files"),
            ("$.input[2].id", Other, "rs_1"),
            ("$.input[2].summary[0].text", Assistant, "Listing files."),
            ("$.input[2].encrypted_content", Other, &marker(B64.len())),
            ("$.input[3].id", Other, "fc_1"),
            ("$.input[3].call_id", Other, "call_1"),
            ("$.input[3].name", ToolCall, "shell"),
            ("$.input[3].arguments{json}.command[0]", ToolCall, "ls"),
            ("$.input[3].arguments{json}.command[1]", ToolCall, "-la"),
            ("$.input[4].call_id", Other, "call_1"),
            (
                "$.input[4].output",
                ToolResult,
                "total 8\ndrwxr-xr-x alice staff .",
            ),
            (
                "$.input[5].content[0].text",
                Assistant,
                "Here are the files.",
            ),
            ("$.tools[0].name", ToolDefinition, "shell"),
            (
                "$.tools[0].description",
                ToolDefinition,
                "Runs a shell command",
            ),
            (
                "$.tools[0].parameters.required[0]",
                ToolDefinition,
                "command",
            ),
            ("$.tool_choice", Other, "auto"),
            ("$.reasoning.effort", Other, "medium"),
            ("$.reasoning.summary", Other, "auto"),
            ("$.include[0]", Other, "reasoning.encrypted_content"),
            ("$.prompt_cache_key", Metadata, "0199a0c2-7f1e"),
            ("$.metadata.origin", Metadata, "codex_cli"),
        ],
    );
    let request = parse(
        "api.openai.com",
        "/v1/responses",
        r#"{"model":"gpt-4.1","input":"Tell me about host db-1","user":"u1"}"#,
    );
    assert_parts(
        &request,
        &[
            ("$.input", User, "Tell me about host db-1"),
            ("$.user", Metadata, "u1"),
        ],
    );
}

#[test]
fn openai_completions_embeddings_and_mistral_fim() {
    let request = parse(
        "api.openai.com",
        "/v1/completions",
        r#"{"model":"gpt-3.5-turbo-instruct","prompt":["Say this is a test","on host x",[1,2]],"suffix":"end","user":"u1","max_tokens":7}"#,
    );
    assert_parts(
        &request,
        &[
            ("$.prompt[0]", User, "Say this is a test"),
            ("$.prompt[1]", User, "on host x"),
            ("$.suffix", User, "end"),
            ("$.user", Metadata, "u1"),
        ],
    );
    let request = parse(
        "api.openai.com",
        "/v1/embeddings",
        r#"{"input":["/etc/hostname says web-1","b"],"model":"text-embedding-3-small","encoding_format":"float"}"#,
    );
    assert_eq!(request.model.as_deref(), Some("text-embedding-3-small"));
    assert_parts(
        &request,
        &[
            ("$.input[0]", User, "/etc/hostname says web-1"),
            ("$.input[1]", User, "b"),
            ("$.encoding_format", Other, "float"),
        ],
    );
    let request = parse(
        "codestral.mistral.ai",
        "/v1/fim/completions",
        r#"{"model":"codestral-latest","prompt":"def fib(n):","suffix":"print(fib(10))","stop":["\n\n"]}"#,
    );
    assert_eq!(request.api, Api::MistralFim);
    assert_parts(
        &request,
        &[
            ("$.prompt", User, "def fib(n):"),
            ("$.suffix", User, "print(fib(10))"),
            ("$.stop[0]", Other, "\n\n"),
        ],
    );
}

#[test]
fn gemini_with_system_instruction_and_function_calls() {
    let body = r#"{
      "systemInstruction": {"role": "user", "parts": [{"text": "You are Gemini CLI. My operating system is: linux"}]},
      "contents": [
        {"role": "user", "parts": [
          {"text": "I'm currently working in the directory: /home/alice/proj"},
          {"inlineData": {"mimeType": "image/png", "data": "<B64>"}}
        ]},
        {"role": "model", "parts": [
          {"text": "Got it.", "thoughtSignature": "<B64>"},
          {"functionCall": {"name": "run_shell_command", "args": {"command": "uname -a"}}}
        ]},
        {"role": "user", "parts": [
          {"functionResponse": {"id": "x1", "name": "run_shell_command", "response": {"output": "Linux build-17 6.8.0-45-generic"}}}
        ]},
        {"parts": [{"text": "no role: a user turn"}]}
      ],
      "tools": [{"functionDeclarations": [{"name": "run_shell_command", "description": "Runs a shell command",
        "parametersJsonSchema": {"type": "object", "properties": {"command": {"type": "string"}}}}]}],
      "generationConfig": {"temperature": 0, "thinkingConfig": {"includeThoughts": true}},
      "labels": {"team": "ml", "host": "build-17"}
    }"#;
    let request = parse(
        "generativelanguage.googleapis.com",
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
        body,
    );
    assert_eq!(request.model.as_deref(), Some("gemini-2.5-pro"));
    assert_eq!(request.stream, Some(true));
    assert_parts(
        &request,
        &[
            (
                "$.systemInstruction.parts[0].text",
                System,
                "You are Gemini CLI. My operating system is: linux",
            ),
            (
                "$.contents[0].parts[0].text",
                User,
                "I'm currently working in the directory: /home/alice/proj",
            ),
            (
                "$.contents[0].parts[1].inlineData.data",
                User,
                &marker(B64.len()),
            ),
            ("$.contents[1].parts[0].text", Assistant, "Got it."),
            (
                "$.contents[1].parts[0].thoughtSignature",
                Assistant,
                &marker(B64.len()),
            ),
            (
                "$.contents[1].parts[1].functionCall.name",
                ToolCall,
                "run_shell_command",
            ),
            (
                "$.contents[1].parts[1].functionCall.args.command",
                ToolCall,
                "uname -a",
            ),
            ("$.contents[2].parts[0].functionResponse.id", Other, "x1"),
            (
                "$.contents[2].parts[0].functionResponse.name",
                ToolResult,
                "run_shell_command",
            ),
            (
                "$.contents[2].parts[0].functionResponse.response.output",
                ToolResult,
                "Linux build-17 6.8.0-45-generic",
            ),
            ("$.contents[3].parts[0].text", User, "no role: a user turn"),
            (
                "$.tools[0].functionDeclarations[0].name",
                ToolDefinition,
                "run_shell_command",
            ),
            (
                "$.tools[0].functionDeclarations[0].description",
                ToolDefinition,
                "Runs a shell command",
            ),
            ("$.labels.team", Metadata, "ml"),
            ("$.labels.host", Metadata, "build-17"),
        ],
    );
}

#[test]
fn dashscope_native_text_multimodal_and_prompt() {
    let body = r#"{
      "model": "qwen-plus",
      "input": {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Who am I? My login is alice on host qa-7."}
      ]},
      "parameters": {"result_format": "message", "temperature": 0.8, "enable_search": true,
        "tools": [{"type": "function", "function": {"name": "get_time", "description": "Current time", "parameters": {}}}]}
    }"#;
    let request = parse(
        "dashscope.aliyuncs.com",
        "/api/v1/services/aigc/text-generation/generation",
        body,
    );
    assert_eq!(
        (request.api, request.model.as_deref()),
        (Api::DashScopeGeneration, Some("qwen-plus"))
    );
    assert_parts(
        &request,
        &[
            (
                "$.input.messages[0].content",
                System,
                "You are a helpful assistant.",
            ),
            (
                "$.input.messages[1].content",
                User,
                "Who am I? My login is alice on host qa-7.",
            ),
            ("$.parameters.result_format", Other, "message"),
            (
                "$.parameters.tools[0].function.name",
                ToolDefinition,
                "get_time",
            ),
            (
                "$.parameters.tools[0].function.description",
                ToolDefinition,
                "Current time",
            ),
        ],
    );
    let request = parse(
        "dashscope-intl.aliyuncs.com",
        "/api/v1/services/aigc/multimodal-generation/generation",
        r#"{"model":"qwen-vl-plus","input":{"messages":[{"role":"user","content":[
            {"image":"https://example.com/cat.png"},{"image":"data:image/png;base64,<B64>"},{"text":"What is this?"}]}]}}"#,
    );
    let image = format!("[binary data: image/png;base64, {} bytes]", B64.len());
    assert_parts(
        &request,
        &[
            (
                "$.input.messages[0].content[0].image",
                User,
                "https://example.com/cat.png",
            ),
            ("$.input.messages[0].content[1].image", User, &image),
            ("$.input.messages[0].content[2].text", User, "What is this?"),
        ],
    );
    let request = parse(
        "dashscope.aliyuncs.com",
        "/api/v1/services/aigc/text-generation/generation",
        r#"{"model":"qwen-turbo","input":{"prompt":"hello","history":[{"user":"hi","bot":"hello!"}]}}"#,
    );
    assert_parts(
        &request,
        &[
            ("$.input.prompt", User, "hello"),
            ("$.input.history[0].user", User, "hi"),
            ("$.input.history[0].bot", Assistant, "hello!"),
        ],
    );
}

#[test]
fn bedrock_converse() {
    let body = r#"{
      "system": [{"text": "You are a helpful assistant on host ip-10-0-0-12."}, {"cachePoint": {"type": "default"}}],
      "messages": [
        {"role": "user", "content": [{"text": "Check disk usage"}, {"image": {"format": "png", "source": {"bytes": "<B64>"}}}]},
        {"role": "assistant", "content": [
          {"reasoningContent": {"reasoningText": {"text": "I should call df.", "signature": "<B64>"}}},
          {"toolUse": {"toolUseId": "tooluse_1", "name": "shell", "input": {"cmd": "df -h"}}}
        ]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "status": "success",
          "content": [{"text": "/dev/nvme0n1p1 50G"}, {"json": {"mount": "/"}}]}}]}
      ],
      "toolConfig": {
        "tools": [{"toolSpec": {"name": "shell", "description": "Run a command",
          "inputSchema": {"json": {"type": "object", "properties": {"cmd": {"type": "string"}}}}}}],
        "toolChoice": {"auto": {}}
      },
      "inferenceConfig": {"maxTokens": 512, "stopSequences": ["END"]},
      "requestMetadata": {"project": "infra"}
    }"#;
    let request = parse(
        "bedrock-runtime.us-east-1.amazonaws.com",
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
        body,
    );
    assert_eq!(request.api, Api::BedrockConverse);
    assert_eq!(
        request.model.as_deref(),
        Some("anthropic.claude-3-5-sonnet-20240620-v1:0")
    );
    assert_eq!(request.stream, Some(true));
    assert_parts(
        &request,
        &[
            (
                "$.system[0].text",
                System,
                "You are a helpful assistant on host ip-10-0-0-12.",
            ),
            ("$.messages[0].content[0].text", User, "Check disk usage"),
            (
                "$.messages[0].content[1].image.source.bytes",
                User,
                &marker(B64.len()),
            ),
            (
                "$.messages[1].content[0].reasoningContent.reasoningText.text",
                Assistant,
                "I should call df.",
            ),
            (
                "$.messages[1].content[0].reasoningContent.reasoningText.signature",
                Assistant,
                &marker(B64.len()),
            ),
            (
                "$.messages[1].content[1].toolUse.toolUseId",
                Other,
                "tooluse_1",
            ),
            ("$.messages[1].content[1].toolUse.name", ToolCall, "shell"),
            (
                "$.messages[1].content[1].toolUse.input.cmd",
                ToolCall,
                "df -h",
            ),
            (
                "$.messages[2].content[0].toolResult.toolUseId",
                Other,
                "tooluse_1",
            ),
            (
                "$.messages[2].content[0].toolResult.status",
                Other,
                "success",
            ),
            (
                "$.messages[2].content[0].toolResult.content[0].text",
                ToolResult,
                "/dev/nvme0n1p1 50G",
            ),
            (
                "$.messages[2].content[0].toolResult.content[1].json.mount",
                ToolResult,
                "/",
            ),
            (
                "$.toolConfig.tools[0].toolSpec.name",
                ToolDefinition,
                "shell",
            ),
            (
                "$.toolConfig.tools[0].toolSpec.description",
                ToolDefinition,
                "Run a command",
            ),
            ("$.inferenceConfig.stopSequences[0]", Other, "END"),
            ("$.requestMetadata.project", Metadata, "infra"),
        ],
    );
}

#[test]
fn bedrock_invoke_reads_each_vendor_shape() {
    let host = "bedrock-runtime.eu-west-1.amazonaws.com";
    let anthropic = parse(
        host,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
        r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":1024,"system":"You run on host x",
            "messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
    );
    assert_eq!(
        anthropic.model.as_deref(),
        Some("anthropic.claude-3-haiku-20240307-v1:0")
    );
    assert_eq!(anthropic.stream, None);
    assert_parts(
        &anthropic,
        &[
            ("$.system", System, "You run on host x"),
            ("$.messages[0].content[0].text", User, "hi"),
        ],
    );
    let nova = parse(
        host,
        "/model/amazon.nova-lite-v1%3A0/invoke",
        r#"{"schemaVersion":"messages-v1","system":[{"text":"sys"}],"messages":[{"role":"user","content":[{"text":"hi"}]}],
            "inferenceConfig":{"maxTokens":10}}"#,
    );
    assert_parts(
        &nova,
        &[
            ("$.system[0].text", System, "sys"),
            ("$.messages[0].content[0].text", User, "hi"),
        ],
    );
    let llama = parse(
        host,
        "/model/meta.llama3-8b-instruct-v1%3A0/invoke-with-response-stream",
        r#"{"prompt":"<|begin_of_text|>user: where am I?","max_gen_len":512}"#,
    );
    assert_eq!(llama.stream, Some(true));
    assert_parts(
        &llama,
        &[("$.prompt", User, "<|begin_of_text|>user: where am I?")],
    );
    let titan = parse(
        host,
        "/model/amazon.titan-text-express-v1/invoke",
        r#"{"inputText":"hello","textGenerationConfig":{"stopSequences":["User:"]}}"#,
    );
    assert_parts(
        &titan,
        &[
            ("$.inputText", User, "hello"),
            ("$.textGenerationConfig.stopSequences[0]", Other, "User:"),
        ],
    );
    let cohere = parse(
        host,
        "/model/cohere.command-r-v1%3A0/invoke",
        r#"{"message":"now","chat_history":[{"role":"USER","message":"before"},{"role":"CHATBOT","message":"ok"}],"preamble":"sys"}"#,
    );
    assert_parts(
        &cohere,
        &[
            ("$.message", User, "now"),
            ("$.chat_history[0].message", User, "before"),
            ("$.chat_history[1].message", Assistant, "ok"),
            ("$.preamble", System, "sys"),
        ],
    );
}

#[test]
fn ollama_chat_and_generate() {
    let body = r#"{
      "model": "llama3.2",
      "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "describe this", "images": ["<B64>"]},
        {"role": "assistant", "content": "", "thinking": "hmm",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Berlin"}}}]},
        {"role": "tool", "content": "22C", "tool_name": "get_weather"}
      ],
      "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City"}}, "required": ["city"]}}}],
      "stream": false,
      "options": {"temperature": 0.1, "stop": ["<|eot|>"]},
      "keep_alive": "5m",
      "format": "json"
    }"#;
    let request = parse("localhost:11434", "/api/chat", body);
    assert_eq!(
        (request.provider.as_str(), request.api),
        ("ollama", Api::OllamaChat)
    );
    assert_eq!(
        (request.model.as_deref(), request.stream),
        (Some("llama3.2"), Some(false))
    );
    assert_parts(
        &request,
        &[
            ("$.messages[0].content", System, "sys"),
            ("$.messages[1].content", User, "describe this"),
            ("$.messages[1].images[0]", User, &marker(B64.len())),
            ("$.messages[2].thinking", Assistant, "hmm"),
            (
                "$.messages[2].tool_calls[0].function.name",
                ToolCall,
                "get_weather",
            ),
            (
                "$.messages[2].tool_calls[0].function.arguments.city",
                ToolCall,
                "Berlin",
            ),
            ("$.messages[3].content", ToolResult, "22C"),
            ("$.messages[3].tool_name", Other, "get_weather"),
            ("$.tools[0].function.name", ToolDefinition, "get_weather"),
            ("$.tools[0].function.description", ToolDefinition, "Weather"),
            (
                "$.tools[0].function.parameters.properties.city.description",
                ToolDefinition,
                "City",
            ),
            (
                "$.tools[0].function.parameters.required[0]",
                ToolDefinition,
                "city",
            ),
            ("$.options.stop[0]", Other, "<|eot|>"),
            ("$.keep_alive", Other, "5m"),
            ("$.format", Other, "json"),
        ],
    );
    let request = parse(
        "127.0.0.1:11434",
        "/api/generate",
        r#"{"model":"qwen2.5-coder","prompt":"def f(","suffix":"return x","system":"complete code",
            "template":"{{ .Prompt }}","images":["<B64>"],"stream":true,"context":[1,2,3]}"#,
    );
    assert_eq!(request.api, Api::OllamaGenerate);
    assert_parts(
        &request,
        &[
            ("$.prompt", User, "def f("),
            ("$.suffix", User, "return x"),
            ("$.system", System, "complete code"),
            ("$.template", Other, "{{ .Prompt }}"),
            ("$.images[0]", User, &marker(B64.len())),
        ],
    );
}

#[test]
fn unclaimed_strings_are_other_parts() {
    let request = parse(
        "gpu-box:8000",
        "/v1/chat/completions",
        r#"{"messages":[{"role":"narrator","content":"once upon a time","name":"bob"},"stray",
            {"role":"user","content":{"type":"text","text":"single block"}}],
            "x-debug":{"hostname":"h-1","it's":["a",{"deep":"b"}]},"messages":"duplicate key"}"#,
    );
    assert_eq!(request.model, None);
    assert_parts(
        &request,
        &[
            ("$.messages[0].role", Other, "narrator"),
            ("$.messages[0].content", Other, "once upon a time"),
            ("$.messages[0].name", Other, "bob"),
            ("$.messages[1]", Other, "stray"),
            ("$.messages[2].content.text", User, "single block"),
            ("$['x-debug'].hostname", Other, "h-1"),
            (r"$['x-debug']['it\'s'][0]", Other, "a"),
            (r"$['x-debug']['it\'s'][1].deep", Other, "b"),
            ("$.messages", Other, "duplicate key"),
        ],
    );
}

#[test]
fn the_body_model_wins_over_the_path() {
    let ep = endpoint(
        "contoso.openai.azure.com",
        "/openai/deployments/prod-4o/chat/completions",
    );
    let from_path = parse_request(&ep, br#"{"messages":[]}"#).unwrap();
    assert_eq!(from_path.model.as_deref(), Some("prod-4o"));
    let from_body = parse_request(&ep, br#"{"model":"gpt-4o","messages":[]}"#).unwrap();
    assert_eq!(from_body.model.as_deref(), Some("gpt-4o"));
    let not_a_string = parse_request(&ep, br#"{"model":{"name":"x"}}"#).unwrap();
    assert_eq!(not_a_string.model.as_deref(), Some("prod-4o"));
    assert_eq!(not_a_string.parts[0].path, "$.model.name");
}

#[test]
fn bad_bodies_are_errors_without_body_text() {
    let ep = endpoint("api.openai.com", "/v1/chat/completions");
    assert!(matches!(
        parse_request(&ep, b"[]"),
        Err(LlmError::NotAnObject { found: "array" })
    ));
    assert!(matches!(
        parse_request(&ep, b"\"hostname\""),
        Err(LlmError::NotAnObject { found: "string" })
    ));
    assert!(matches!(
        parse_request(&ep, b"42"),
        Err(LlmError::NotAnObject { .. })
    ));
    let e = parse_request(&ep, br#"{"messages":[{"content":"secret-host"]}"#).unwrap_err();
    assert!(matches!(e, LlmError::Malformed { .. }));
    assert!(!e.to_string().contains("secret"), "{e}");
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(
        parse_request(&ep, deep.as_bytes()),
        Err(LlmError::TooDeep { limit: 127 })
    ));
}

#[test]
fn part_count_and_text_size_are_bounded() {
    let ep = endpoint("api.openai.com", "/v1/embeddings");
    let many = format!("{{\"input\":[{}\"last\"]}}", "\"x\",".repeat(100_000));
    let request = parse_request(&ep, many.as_bytes()).unwrap();
    assert_eq!(request.parts.len(), 100_000);
    assert!(request.truncated);
    let big = format!("{{\"input\":[\"{}\",\"after\"]}}", "é".repeat(9 << 20));
    let request = parse_request(&ep, big.as_bytes()).unwrap();
    assert!(request.truncated);
    assert_eq!(request.parts.len(), 1);
    assert_eq!(request.parts[0].text.len(), 16 << 20);
}

#[test]
fn records_serialise_with_snake_case_names() {
    let request = parse(
        "api.openai.com",
        "/v1/chat/completions",
        r#"{"model":"m","messages":[{"role":"tool","content":"out"}]}"#,
    );
    let json = serde_json::to_value(&request).unwrap();
    assert_eq!(json["api"], "openai_chat");
    assert_eq!(json["parts"][0]["role"], "tool_result");
    assert_eq!(json["parts"][0]["path"], "$.messages[0].content");
    assert_eq!(json["stream"], serde_json::Value::Null);
    let ep = serde_json::to_value(endpoint(
        "dashscope.aliyuncs.com",
        "/api/v1/services/aigc/text-generation/generation",
    ))
    .unwrap();
    assert_eq!(ep["api"], "dashscope_generation");
}

#[test]
fn the_deepest_accepted_body_is_walked() {
    // 4 + 61 × 2 + 1 = 127 levels, recursing through the tool result rules.
    let levels = 61;
    let body = format!(
        "{{\"messages\":[{{\"role\":\"user\",\"content\":[{}{{\"type\":\"text\",\"text\":\"deep\"}}{}]}}]}}",
        "{\"type\":\"tool_result\",\"content\":[".repeat(levels),
        "]}".repeat(levels)
    );
    let request = parse("api.openai.com", "/v1/chat/completions", &body);
    assert_eq!(request.parts.len(), 1);
    assert_eq!(request.parts[0].role, ToolResult);
    assert!(request.parts[0].path.ends_with(".content[0].text"));
}
