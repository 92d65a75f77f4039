//! Every answer from outside is read within a size limit: an upstream that answers far more than
//! its API ever does (a misconfigured endpoint, a proxy, an attack) costs an error naming the
//! limit, not the function's memory. The limits are per kind of answer, set where each adapter
//! reads (CLS, COS, API 3.0, chat robots) and listed in docs/security.md.

use std::fmt;

/// An answer could not be read within its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The answer is larger than `limit` bytes (declared or as read).
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The connection failed after `after` bytes.
    Cut {
        /// Bytes read before it failed.
        after: usize,
        /// Why.
        message: String,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::TooLarge { limit } => write!(f, "the answer is over {limit} bytes"),
            ReadError::Cut { after, message } => {
                write!(
                    f,
                    "reading the answer failed after {after} bytes: {message}"
                )
            }
        }
    }
}

/// Reads the body of `response`, at most `limit` bytes. A declared `Content-Length` over the
/// limit is refused before anything is read.
pub(crate) async fn read(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(ReadError::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(ReadError::Cut {
                    after: body.len(),
                    message: e.to_string(),
                })
            }
        }
    }
}

/// [`read`], as text (invalid UTF-8 replaced).
pub(crate) async fn read_text(
    response: reqwest::Response,
    limit: usize,
) -> Result<String, ReadError> {
    read(response, limit)
        .await
        .map(|body| String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers one request with `answer` (raw HTTP) and closes.
    async fn answering(answer: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(&answer).await;
            let _ = socket.shutdown().await;
        });
        url
    }

    async fn get(answer: &str, limit: usize) -> Result<Vec<u8>, ReadError> {
        let url = answering(answer.as_bytes().to_vec()).await;
        let response = reqwest::get(url).await.unwrap();
        read(response, limit).await
    }

    #[tokio::test]
    async fn answers_within_the_limit_are_read_and_larger_ones_refused() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        assert_eq!(get(ok, 5).await.unwrap(), b"hello");
        // Declared too large: refused before reading.
        assert_eq!(get(ok, 4).await, Err(ReadError::TooLarge { limit: 4 }));
        // Not declared (chunked): refused once the limit is passed.
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        assert_eq!(get(chunked, 10).await.unwrap(), b"helloworld");
        assert_eq!(get(chunked, 7).await, Err(ReadError::TooLarge { limit: 7 }));
        // Cut off before the declared length: an error, never a short body taken as the answer.
        let cut =
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"Response\":";
        let error = get(cut, 1000).await.unwrap_err();
        assert!(matches!(error, ReadError::Cut { .. }), "{error}");
    }
}
