//! Streamed answers: Server-Sent Events of `chat.completion.chunk` objects,
//! put together into the `ChatResponse` the unstreamed answer would have been.

use corpusgen_core::{ChatResponse, ProviderError, ProviderErrorKind};
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};

use crate::wire::StreamAssembly;

/// The `data` of the event that closes an OpenAI stream.
const DONE: &str = "[DONE]";

/// Reads a streamed answer from the bytes of a response body, in pieces cut
/// anywhere (inside a line, inside a UTF-8 char). Reading stops at
/// `data: [DONE]`. `transport_error` classifies a failure to read the body.
pub(crate) async fn read_event_stream<S, B, E>(
    provider: &str,
    bytes: S,
    transport_error: impl Fn(E) -> ProviderError,
) -> Result<ChatResponse, ProviderError>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    let mut events = std::pin::pin!(bytes.eventsource());
    let mut assembly = StreamAssembly::default();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(EventStreamError::Transport(err)) => return Err(transport_error(err)),
            Err(EventStreamError::Utf8(_)) => {
                return Err(malformed(provider, "bytes that are not UTF-8"));
            }
            Err(EventStreamError::Parser(_)) => {
                return Err(malformed(provider, "a line that is not an event"));
            }
        };
        let data = event.data.trim();
        if data == DONE {
            return assembly.finish(provider, true);
        }
        assembly.accept(provider, data)?;
    }
    assembly.finish(provider, false)
}

fn malformed(provider: &str, what: &str) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Malformed,
        format!(
            "{provider} streamed {what}; turn streaming off if this server does not stream Server-Sent Events"
        ),
    )
}

#[cfg(test)]
mod tests {
    //! Network reads cut a body anywhere, and a local HTTP server cannot be
    //! made to cut it at a chosen byte; feeding the reader directly can, so
    //! these tests try every cut.

    use std::convert::Infallible;

    use super::*;

    const PROVIDER: &str = "test";

    fn chunk(content: &str, finish_reason: Option<&str>) -> String {
        let chunk = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4.1-2025-04-14",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}]
        });
        format!("data: {chunk}\n\n")
    }

    fn body() -> String {
        let mut body = String::new();
        for piece in ["Réponse: ", "β ", "=", " 0.1 ", "🙂", "\nfin"] {
            body.push_str(&chunk(piece, None));
        }
        body.push_str(&chunk("", Some("stop")));
        body.push_str(
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":7,\"total_tokens\":10}}\n\n",
        );
        body.push_str("data: [DONE]\n\n");
        body
    }

    fn read(pieces: Vec<Vec<u8>>) -> Result<ChatResponse, ProviderError> {
        let bytes = futures::stream::iter(pieces.into_iter().map(Ok::<_, Infallible>));
        futures::executor::block_on(read_event_stream(PROVIDER, bytes, |never| match never {}))
    }

    #[test]
    fn every_cut_of_the_body_gives_the_same_response() {
        let body = body().into_bytes();
        let whole = read(vec![body.clone()]).unwrap();
        assert_eq!(whole.text, "Réponse: β = 0.1 🙂\nfin");
        assert_eq!(whole.usage.map(|usage| usage.total_tokens), Some(10));
        for first_cut in 0..=body.len() {
            let pieces = vec![body[..first_cut].to_vec(), body[first_cut..].to_vec()];
            assert_eq!(read(pieces).unwrap(), whole, "cut at byte {first_cut}");
        }
    }

    #[test]
    fn a_body_read_a_byte_at_a_time_gives_the_same_response() {
        let body = body().into_bytes();
        let whole = read(vec![body.clone()]).unwrap();
        let bytes = body.iter().map(|byte| vec![*byte]).collect();
        assert_eq!(read(bytes).unwrap(), whole);
    }

    #[test]
    fn a_body_cut_off_at_any_point_before_the_finish_reason_is_torn() {
        let body = body();
        let finish = body.find("\"finish_reason\":\"stop\"").unwrap();
        // The end of the event before the one with the finish reason.
        let last_complete_event = body[..finish].rfind("\n\n").unwrap() + 2;
        for end in 0..last_complete_event {
            let err = read(vec![body.as_bytes()[..end].to_vec()]).unwrap_err();
            assert_eq!(
                err.kind,
                ProviderErrorKind::Malformed,
                "cut at {end}: {err}"
            );
        }
    }
}
