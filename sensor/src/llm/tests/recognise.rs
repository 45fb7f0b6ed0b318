//! Request-line recognition against the embedded catalogue.

use crate::llm::{Api, Catalog, Endpoint};

/// What a recognition should yield: provider, API, model from the path,
/// self-hosted, streaming.
type Expect = (&'static str, Api, Option<&'static str>, bool, bool);

fn check(method: &str, authority: Option<&str>, target: &str, expect: Option<Expect>) {
    let found = Catalog::embedded().recognise(method, authority, target);
    let found = found.as_ref().map(|e: &Endpoint| {
        (
            e.provider.as_str(),
            e.api,
            e.model_from_path.as_deref(),
            e.self_hosted,
            e.streaming,
        )
    });
    assert_eq!(found, expect, "{method} {authority:?} {target}");
}

/// A hosted provider's endpoint, no model in the path, not streaming.
fn hosted(provider: &'static str, api: Api) -> Option<Expect> {
    Some((provider, api, None, false, false))
}

#[test]
fn anthropic_and_openai() {
    let a = Some("api.anthropic.com");
    check(
        "POST",
        a,
        "/v1/messages?beta=true",
        hosted("anthropic", Api::AnthropicMessages),
    );
    check(
        "POST",
        a,
        "/v1/messages/count_tokens?beta=true",
        hosted("anthropic", Api::AnthropicCountTokens),
    );
    check(
        "POST",
        a,
        "/v1/complete",
        hosted("anthropic", Api::AnthropicComplete),
    );
    check(
        "post",
        a,
        "/v1/chat/completions",
        hosted("anthropic", Api::OpenAiChat),
    );
    let o = Some("api.openai.com:443");
    check(
        "POST",
        o,
        "/v1/chat/completions",
        hosted("openai", Api::OpenAiChat),
    );
    check(
        "POST",
        Some("API.OpenAI.com"),
        "/v1/responses",
        hosted("openai", Api::OpenAiResponses),
    );
    check(
        "POST",
        o,
        "/v1/completions",
        hosted("openai", Api::OpenAiCompletions),
    );
    check(
        "POST",
        o,
        "/v1/embeddings/",
        hosted("openai", Api::OpenAiEmbeddings),
    );
    check(
        "POST",
        Some("chatgpt.com"),
        "/backend-api/codex/responses",
        hosted("chatgpt", Api::OpenAiResponses),
    );
}

#[test]
fn azure_deployment_is_the_model() {
    check(
        "POST",
        Some("contoso.openai.azure.com"),
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
        Some((
            "azure-openai",
            Api::OpenAiChat,
            Some("gpt-4o-prod"),
            false,
            false,
        )),
    );
    check(
        "POST",
        Some("res1.cognitiveservices.azure.com"),
        "/openai/deployments/emb%20large/embeddings",
        Some((
            "azure-openai",
            Api::OpenAiEmbeddings,
            Some("emb large"),
            false,
            false,
        )),
    );
    check(
        "POST",
        Some("contoso.openai.azure.com"),
        "/openai/v1/responses",
        hosted("azure-openai", Api::OpenAiResponses),
    );
    // The wildcard is one label: a deeper name is not Azure's.
    check(
        "POST",
        Some("a.b.openai.azure.com"),
        "/openai/deployments/x/chat/completions",
        None,
    );
}

#[test]
fn gemini_and_vertex_take_the_model_from_the_path() {
    let g = Some("generativelanguage.googleapis.com");
    check(
        "POST",
        g,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        Some((
            "gemini",
            Api::GeminiGenerate,
            Some("gemini-2.5-flash"),
            false,
            false,
        )),
    );
    check(
        "POST",
        g,
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
        Some((
            "gemini",
            Api::GeminiGenerate,
            Some("gemini-2.5-pro"),
            false,
            true,
        )),
    );
    check(
        "POST",
        g,
        "/v1beta/openai/chat/completions",
        hosted("gemini", Api::OpenAiChat),
    );
    check("POST", g, "/v1beta/models/gemini-2.5-pro:countTokens", None);
    check(
        "POST",
        Some("us-central1-aiplatform.googleapis.com"),
        "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:generateContent",
        Some((
            "vertex-ai",
            Api::GeminiGenerate,
            Some("gemini-2.0-flash-001"),
            false,
            false,
        )),
    );
    check(
        "POST",
        Some("aiplatform.googleapis.com"),
        "/v1/projects/p/locations/global/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict",
        Some((
            "vertex-ai",
            Api::AnthropicMessages,
            Some("claude-sonnet-4@20250514"),
            false,
            true,
        )),
    );
    check(
        "POST",
        Some("europe-west1-aiplatform.googleapis.com"),
        "/v1/projects/p/locations/europe-west1/publishers/anthropic/models/count-tokens:rawPredict",
        hosted("vertex-ai", Api::AnthropicCountTokens),
    );
}

#[test]
fn bedrock_model_ids_are_percent_decoded() {
    let b = Some("bedrock-runtime.us-east-1.amazonaws.com");
    check(
        "POST",
        b,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke",
        Some((
            "aws-bedrock",
            Api::BedrockInvoke,
            Some("anthropic.claude-3-5-sonnet-20240620-v1:0"),
            false,
            false,
        )),
    );
    check(
        "POST",
        b,
        "/model/meta.llama3-70b-instruct-v1:0/invoke-with-response-stream",
        Some((
            "aws-bedrock",
            Api::BedrockInvoke,
            Some("meta.llama3-70b-instruct-v1:0"),
            false,
            true,
        )),
    );
    check(
        "POST",
        Some("bedrock-runtime.us-west-2.amazonaws.com"),
        "/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream",
        Some((
            "aws-bedrock",
            Api::BedrockConverse,
            Some(
                "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0",
            ),
            false,
            true,
        )),
    );
    check(
        "POST",
        Some("bedrock-runtime-fips.us-gov-west-1.amazonaws.com"),
        "/model/amazon.nova-pro-v1%3A0/converse",
        Some((
            "aws-bedrock",
            Api::BedrockConverse,
            Some("amazon.nova-pro-v1:0"),
            false,
            false,
        )),
    );
    // The control plane is not the runtime.
    check(
        "POST",
        Some("bedrock.us-east-1.amazonaws.com"),
        "/model/x/invoke",
        None,
    );
}

#[test]
fn dashscope_deepseek_mistral() {
    for host in ["dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com"] {
        let h = Some(host);
        check(
            "POST",
            h,
            "/api/v1/services/aigc/text-generation/generation",
            hosted("dashscope", Api::DashScopeGeneration),
        );
        check(
            "POST",
            h,
            "/api/v1/services/aigc/multimodal-generation/generation",
            hosted("dashscope", Api::DashScopeGeneration),
        );
        check(
            "POST",
            h,
            "/compatible-mode/v1/chat/completions",
            hosted("dashscope", Api::OpenAiChat),
        );
    }
    let d = Some("api.deepseek.com");
    check(
        "POST",
        d,
        "/chat/completions",
        hosted("deepseek", Api::OpenAiChat),
    );
    check(
        "POST",
        d,
        "/v1/chat/completions",
        hosted("deepseek", Api::OpenAiChat),
    );
    check(
        "POST",
        d,
        "/anthropic/v1/messages",
        hosted("deepseek", Api::AnthropicMessages),
    );
    let m = Some("api.mistral.ai");
    check(
        "POST",
        m,
        "/v1/chat/completions",
        hosted("mistral", Api::OpenAiChat),
    );
    check(
        "POST",
        m,
        "/v1/fim/completions",
        hosted("mistral", Api::MistralFim),
    );
    check(
        "POST",
        Some("codestral.mistral.ai"),
        "/v1/fim/completions",
        hosted("mistral", Api::MistralFim),
    );
}

#[test]
fn openai_compatible_hosts() {
    let cases = [
        ("openrouter.ai", "/api/v1/chat/completions", "openrouter"),
        ("api.groq.com", "/openai/v1/chat/completions", "groq"),
        ("api.together.xyz", "/v1/chat/completions", "together"),
        ("api.x.ai", "/v1/chat/completions", "xai"),
        ("api.moonshot.cn", "/v1/chat/completions", "moonshot"),
        ("api.moonshot.ai", "/v1/chat/completions", "moonshot"),
        ("open.bigmodel.cn", "/api/paas/v4/chat/completions", "zhipu"),
        ("api.z.ai", "/api/paas/v4/chat/completions", "zhipu"),
        (
            "api.fireworks.ai",
            "/inference/v1/chat/completions",
            "fireworks",
        ),
        (
            "api.individual.githubcopilot.com",
            "/chat/completions",
            "github-copilot",
        ),
    ];
    for (host, path, provider) in cases {
        check("POST", Some(host), path, hosted(provider, Api::OpenAiChat));
    }
}

#[test]
fn self_hosted_by_path_shape() {
    let local = Some("localhost:11434");
    check(
        "POST",
        local,
        "/api/chat",
        Some(("ollama", Api::OllamaChat, None, true, false)),
    );
    check(
        "POST",
        Some("[::1]:11434"),
        "/api/generate",
        Some(("ollama", Api::OllamaGenerate, None, true, false)),
    );
    check(
        "POST",
        local,
        "/v1/chat/completions",
        Some(("ollama", Api::OpenAiChat, None, true, false)),
    );
    check(
        "POST",
        Some("gpu-box:8000"),
        "/v1/chat/completions",
        Some(("openai-compatible", Api::OpenAiChat, None, true, false)),
    );
    check(
        "POST",
        Some("litellm.internal"),
        "/chat/completions",
        Some(("openai-compatible", Api::OpenAiChat, None, true, false)),
    );
    check(
        "POST",
        Some("127.0.0.1:1234"),
        "/v1/responses",
        Some(("openai-compatible", Api::OpenAiResponses, None, true, false)),
    );
    check(
        "POST",
        Some("proxy.internal:4000"),
        "/v1/messages?beta=true",
        Some((
            "anthropic-compatible",
            Api::AnthropicMessages,
            None,
            true,
            false,
        )),
    );
    check(
        "POST",
        None,
        "/v1/completions",
        Some((
            "openai-compatible",
            Api::OpenAiCompletions,
            None,
            true,
            false,
        )),
    );
}

#[test]
fn host_entries_win_over_path_shapes() {
    // Both would match `/v1/messages`; the listed host decides.
    check(
        "POST",
        Some("api.anthropic.com"),
        "/v1/messages",
        hosted("anthropic", Api::AnthropicMessages),
    );
    check(
        "POST",
        Some("api.x.ai"),
        "/v1/messages",
        hosted("xai", Api::AnthropicMessages),
    );
    check(
        "POST",
        Some("api.deepseek.com:443"),
        "/v1/chat/completions",
        hosted("deepseek", Api::OpenAiChat),
    );
    // A known host with a path its provider does not list still matches a
    // path shape: better a self-hosted guess than an invisible request.
    check(
        "POST",
        Some("api.groq.com"),
        "/v1/chat/completions",
        Some(("openai-compatible", Api::OpenAiChat, None, true, false)),
    );
    // Absolute-form target through a proxy: the target's authority counts.
    check(
        "POST",
        Some("proxy.corp:3128"),
        "https://api.openai.com/v1/chat/completions",
        hosted("openai", Api::OpenAiChat),
    );
}

#[test]
fn non_matches() {
    check("GET", Some("api.openai.com"), "/v1/models", None);
    check("POST", Some("api.openai.com"), "/v1/models", None);
    check("GET", Some("api.anthropic.com"), "/v1/messages", None);
    check(
        "POST",
        Some("api.anthropic.com"),
        "/v1/messages/batches",
        None,
    );
    check("POST", Some("example.com"), "/upload", None);
    check("POST", Some("example.com"), "/v1/chat", None);
    check("POST", Some("example.com"), "/api/chat/extra", None);
    check("POST", None, "*", None);
    check("POST", None, "", None);
    check(
        "POST",
        Some("localhost:11435"),
        "/v1/chat/completions",
        Some(("openai-compatible", Api::OpenAiChat, None, true, false)),
    );
}
