//! Token counts of texts and chat prompts, counted on this side with the
//! model's tiktoken encoding, so a token target is deterministic and works
//! the same for replayed and live responses.

use std::fmt;

use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

use crate::provider::{ChatMessage, Role};

/// Tokens the Chat Completions API adds around each message (`<|start|>`,
/// the role, `<|message|>`, `<|end|>` less the role itself), as OpenAI's
/// cookbook counts them for every current chat model.
pub const TOKENS_PER_MESSAGE: u64 = 3;

/// Tokens that prime the assistant's reply, added once per request.
pub const TOKENS_PER_REPLY: u64 = 3;

/// The tiktoken encodings corpusgen counts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// gpt-4o, gpt-4.1, gpt-5 and the o-series.
    O200kBase,
    /// gpt-4, gpt-3.5-turbo and the older embeddings.
    Cl100kBase,
    /// The open-weight gpt-oss models.
    O200kHarmony,
}

/// Which encoding a model uses, and whether tiktoken knows the model or the
/// encoding is the fallback (`o200k_base`, the encoding of every current
/// OpenAI chat model) for a model it does not know, such as a local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelEncoding {
    pub encoding: Encoding,
    pub known: bool,
}

/// Counts tokens with one encoding. The vocabulary is loaded once per
/// process, on first use.
#[derive(Clone, Copy)]
pub struct TokenCounter {
    encoding: Encoding,
    bpe: &'static CoreBPE,
}

impl Encoding {
    /// The encoding's tiktoken name, as the manifest records it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kHarmony => "o200k_harmony",
        }
    }

    /// The encoding of a tiktoken name; `None` for a name corpusgen does not count with.
    pub fn from_name(name: &str) -> Option<Encoding> {
        match name {
            "o200k_base" => Some(Encoding::O200kBase),
            "cl100k_base" => Some(Encoding::Cl100kBase),
            "o200k_harmony" => Some(Encoding::O200kHarmony),
            _ => None,
        }
    }

    /// The encoding a model's tokens are counted in. Models that tiktoken maps
    /// to the pre-chat encodings (davinci and the like) are counted in
    /// `o200k_base` too: they cannot serve chat completions.
    pub fn for_model(model: &str) -> ModelEncoding {
        let known = |encoding| ModelEncoding {
            encoding,
            known: true,
        };
        match get_tokenizer(model) {
            Some(Tokenizer::O200kBase) => known(Encoding::O200kBase),
            Some(Tokenizer::Cl100kBase) => known(Encoding::Cl100kBase),
            Some(Tokenizer::O200kHarmony) => known(Encoding::O200kHarmony),
            _ => ModelEncoding {
                encoding: Encoding::O200kBase,
                known: false,
            },
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TokenCounter {
    pub fn new(encoding: Encoding) -> TokenCounter {
        let bpe = match encoding {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            Encoding::O200kHarmony => tiktoken_rs::o200k_harmony_singleton(),
        };
        TokenCounter { encoding, bpe }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The tokens of a text. Text that looks like a special token
    /// (`<|endoftext|>`) is counted as the ordinary text it is in a response.
    pub fn count(&self, text: &str) -> u64 {
        self.bpe.encode_ordinary(text).len() as u64
    }

    /// The prompt tokens of one chat request, as the API counts them, about:
    /// each message's role and content plus `TOKENS_PER_MESSAGE`, plus
    /// `TOKENS_PER_REPLY` once. Providers report the exact figure in usage;
    /// this is for estimates made before any request.
    pub fn chat_prompt_tokens(&self, messages: &[ChatMessage]) -> u64 {
        let framing: u64 = messages
            .iter()
            .map(|message| {
                let role = match message.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                TOKENS_PER_MESSAGE + self.count(role) + self.count(&message.content)
            })
            .sum();
        framing + TOKENS_PER_REPLY
    }
}

impl fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCounter")
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_openai_models_use_o200k_and_older_ones_cl100k() {
        for model in [
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4o-2024-08-06",
            "o3",
            "o4-mini",
            "gpt-5",
        ] {
            assert_eq!(
                Encoding::for_model(model),
                ModelEncoding {
                    encoding: Encoding::O200kBase,
                    known: true
                },
                "{model}"
            );
        }
        assert_eq!(Encoding::for_model("gpt-4").encoding, Encoding::Cl100kBase);
        assert_eq!(
            Encoding::for_model("gpt-3.5-turbo").encoding,
            Encoding::Cl100kBase
        );
        assert_eq!(
            Encoding::for_model("smollm2:135m"),
            ModelEncoding {
                encoding: Encoding::O200kBase,
                known: false
            }
        );
    }

    #[test]
    fn encoding_names_round_trip() {
        for encoding in [
            Encoding::O200kBase,
            Encoding::Cl100kBase,
            Encoding::O200kHarmony,
        ] {
            assert_eq!(Encoding::from_name(encoding.name()), Some(encoding));
        }
        assert_eq!(Encoding::from_name("p50k_base"), None);
    }

    #[test]
    fn a_chat_prompt_counts_its_texts_and_the_framing() {
        let counter = TokenCounter::new(Encoding::O200kBase);
        // "hello world" is two tokens in both encodings.
        assert_eq!(counter.count("hello world"), 2);
        let messages = [
            ChatMessage {
                role: Role::System,
                content: "hello world".into(),
            },
            ChatMessage {
                role: Role::User,
                content: "hello world".into(),
            },
        ];
        // Two messages of (3 + 1 role + 2) tokens, and 3 for the reply.
        assert_eq!(counter.chat_prompt_tokens(&messages), 15);
        // A special token in a response is ordinary text, several tokens long.
        assert!(counter.count("<|endoftext|>") > 1);
    }
}
