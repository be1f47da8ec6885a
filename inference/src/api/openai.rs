//! OpenAI chat-completions wire types and their validation.
//!
//! Requests are parsed strictly enough to give a clear message for every
//! wrong shape (unknown role, wrong type, value out of range) and loosely
//! enough that official clients work unchanged: unknown fields are ignored.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::engine::{ChatMessage, SamplingParams};

/// Most messages one request may carry.
pub const MAX_MESSAGES: usize = 1024;
/// Most stop strings, and the longest one in bytes.
pub const MAX_STOPS: usize = 8;
pub const MAX_STOP_BYTES: usize = 256;

#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<RequestMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub top_k: Option<i32>,
    #[serde(default)]
    pub min_p: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub repeat_penalty: Option<f32>,
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub stop: Vec<String>,
    #[serde(default)]
    pub n: Option<u32>,
    /// llama.cpp extension: generate exactly `max_tokens` (benchmarks).
    #[serde(default)]
    pub ignore_eos: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct RequestMessage {
    pub role: Role,
    #[serde(default, deserialize_with = "message_content")]
    pub content: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    /// OpenAI's newer name for system instructions.
    Developer,
    User,
    Assistant,
}

impl Role {
    /// The role name the model's chat template knows.
    fn template_name(self) -> &'static str {
        match self {
            Role::System | Role::Developer => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// A request that passed validation, ready for the engine.
#[derive(Debug)]
pub struct ValidRequest {
    pub messages: Vec<ChatMessage>,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
}

impl ChatCompletionRequest {
    /// Checks ranges and shapes that serde cannot express.
    pub fn validate(self) -> Result<ValidRequest, (String, &'static str)> {
        let bad = |param: &'static str, message: String| Err((message, param));
        if self.messages.is_empty() {
            return bad("messages", "messages must hold at least one message".into());
        }
        if self.messages.len() > MAX_MESSAGES {
            return bad("messages", format!("at most {MAX_MESSAGES} messages are accepted"));
        }
        if self.n.is_some_and(|n| n != 1) {
            return bad("n", "only n = 1 is supported".into());
        }
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_tokens == Some(0) {
            return bad("max_tokens", "max_tokens must be at least 1".into());
        }
        if self.stop.len() > MAX_STOPS {
            return bad("stop", format!("at most {MAX_STOPS} stop strings are accepted"));
        }
        if self.stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
            return bad("stop", format!("a stop string may be at most {MAX_STOP_BYTES} bytes"));
        }

        let defaults = SamplingParams::default();
        let sampling = SamplingParams {
            temperature: in_range("temperature", self.temperature, 0.0, 2.0, defaults.temperature)?,
            top_p: in_range("top_p", self.top_p, 0.0, 1.0, defaults.top_p)?,
            top_k: match self.top_k {
                Some(k) if k < 0 => return bad("top_k", "top_k must be 0 (off) or more".into()),
                Some(k) => k,
                None => defaults.top_k,
            },
            min_p: in_range("min_p", self.min_p, 0.0, 1.0, defaults.min_p)?,
            // Any integer is accepted; it is folded into the engine's 32-bit
            // seeds, never onto the value that means "random".
            seed: self.seed.map(|s| (s as u64 % u64::from(u32::MAX)) as u32),
            repeat_penalty: in_range("repeat_penalty", self.repeat_penalty, 0.01, 10.0, defaults.repeat_penalty)?,
            frequency_penalty: in_range(
                "frequency_penalty",
                self.frequency_penalty,
                -2.0,
                2.0,
                defaults.frequency_penalty,
            )?,
            presence_penalty: in_range(
                "presence_penalty",
                self.presence_penalty,
                -2.0,
                2.0,
                defaults.presence_penalty,
            )?,
            penalty_last_n: defaults.penalty_last_n,
        };

        let messages = self
            .messages
            .into_iter()
            .map(|m| ChatMessage { role: m.role.template_name(), content: m.content })
            .collect();
        Ok(ValidRequest {
            messages,
            stream: self.stream.unwrap_or(false),
            max_tokens,
            sampling,
            stop: self.stop,
            ignore_eos: self.ignore_eos.unwrap_or(false),
        })
    }
}

fn in_range(
    param: &'static str,
    value: Option<f32>,
    min: f32,
    max: f32,
    default: f32,
) -> Result<f32, (String, &'static str)> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
        Some(v) => Err((format!("{param} must be between {min} and {max}, got {v}"), param)),
    }
}

/// `stop` may be a string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    use serde::de::Error;
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(D::Error::custom("stop must be a string or a list of strings")),
            })
            .collect(),
        _ => Err(D::Error::custom("stop must be a string or a list of strings")),
    }
}

/// Message content may be a string, a list of text parts, or null.
fn message_content<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    use serde::de::Error;
    let wrong = || D::Error::custom("content must be a string or a list of {\"type\": \"text\", \"text\": ...} parts");
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                let Value::Object(part) = part else { return Err(wrong()) };
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (Some(kind), _) if kind != "text" => {
                        return Err(D::Error::custom(format!("content parts of type `{kind}` are not supported")))
                    }
                    _ => return Err(wrong()),
                }
            }
            Ok(text)
        }
        _ => Err(wrong()),
    }
}

#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: UsageBody,
    /// The node's signed usage receipt (base64url), an extension field.
    pub receipt: String,
}

#[derive(Debug, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageBody {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

impl From<&crate::engine::Usage> for UsageBody {
    fn from(usage: &crate::engine::Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens + usage.completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens: usage.cached_prompt_tokens },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ChatCompletionChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ValidRequest, String> {
        let request: ChatCompletionRequest = serde_json::from_str(json).map_err(|e| e.to_string())?;
        request.validate().map_err(|(message, _)| message)
    }

    #[test]
    fn accepts_string_and_part_contents() {
        let ok = parse(
            r#"{"model":"m","messages":[{"role":"system","content":"s"},
               {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(ok.messages[1].content, "ab");
        assert_eq!(ok.messages[0].role, "system");
    }

    #[test]
    fn refuses_unknown_roles_with_the_allowed_list() {
        let err = parse(r#"{"messages":[{"role":"wizard","content":"x"}]}"#).unwrap_err();
        assert!(err.contains("unknown variant `wizard`"), "{err}");
        assert!(err.contains("`assistant`"), "{err}");
    }

    #[test]
    fn refuses_wrong_types() {
        let err = parse(r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
        let err = parse(r#"{"messages":[{"role":"user","content":5}]}"#).unwrap_err();
        assert!(err.contains("content must be"), "{err}");
        let err = parse(r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#).unwrap_err();
        assert!(err.contains("image_url"), "{err}");
    }

    #[test]
    fn refuses_out_of_range_values() {
        let err = parse(r#"{"messages":[{"role":"user","content":"x"}],"temperature":3}"#).unwrap_err();
        assert!(err.contains("temperature must be between 0 and 2"), "{err}");
        let err = parse(r#"{"messages":[]}"#).unwrap_err();
        assert!(err.contains("at least one message"), "{err}");
        let err = parse(r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#).unwrap_err();
        assert!(err.contains("n = 1"), "{err}");
    }

    #[test]
    fn stop_may_be_one_or_many() {
        let one = parse(r#"{"messages":[{"role":"user","content":"x"}],"stop":"END"}"#).unwrap();
        assert_eq!(one.stop, vec!["END"]);
        let many = parse(r#"{"messages":[{"role":"user","content":"x"}],"stop":["a","b"]}"#).unwrap();
        assert_eq!(many.stop, vec!["a", "b"]);
    }

    #[test]
    fn temperature_zero_is_greedy_and_seed_never_means_random() {
        let req = parse(r#"{"messages":[{"role":"user","content":"x"}],"temperature":0,"seed":4294967295}"#).unwrap();
        assert!(req.sampling.is_greedy());
        assert_ne!(req.sampling.seed, Some(u32::MAX));
    }
}
