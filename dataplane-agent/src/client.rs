//! Client of the agent's API over its Unix socket.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::{de::DeserializeOwned, Serialize};
use tokio::net::UnixStream;

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes> {
        let unreachable = |e: &dyn std::fmt::Display| {
            Error::Unavailable(format!(
                "cannot reach the agent at {} (is `dataplane agent` running?): {e}",
                self.socket.display()
            ))
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "dataplane")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::invalid(format!("bad request path {path:?}: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        if !status.is_success() {
            let v = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
            let message = v
                .as_ref()
                .and_then(|v| v.get("error")?.as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).to_string());
            let kind = v
                .and_then(|v| serde_json::from_value::<ErrorKind>(v.get("kind")?.clone()).ok())
                .unwrap_or_else(|| ErrorKind::from_http_status(status.as_u16()));
            return Err(Error::Remote { kind, message });
        }
        Ok(bytes)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let b = self.call(Method::GET, path, None).await?;
        decode(&b)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::Internal(anyhow::anyhow!("encoding the request: {e}")))?;
        let b = self.call(Method::POST, path, Some(body)).await?;
        decode(&b)
    }

    /// GET a stream of lines (`/v1/monitor`): `opened` once the answer's
    /// headers arrived, then `line` for each line until it returns false
    /// or the agent ends the stream.
    pub async fn get_lines(
        &self,
        path: &str,
        opened: impl FnOnce(),
        mut line: impl FnMut(&[u8]) -> Result<bool>,
    ) -> Result<()> {
        let unreachable = |e: &dyn std::fmt::Display| {
            Error::Unavailable(format!(
                "cannot reach the agent at {} (is `dataplane agent` running?): {e}",
                self.socket.display()
            ))
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", "dataplane")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::invalid(format!("bad request path {path:?}: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(&e))?
                .to_bytes();
            let v = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
            let message = v
                .as_ref()
                .and_then(|v| v.get("error")?.as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).to_string());
            let kind = v
                .and_then(|v| serde_json::from_value::<ErrorKind>(v.get("kind")?.clone()).ok())
                .unwrap_or_else(|| ErrorKind::from_http_status(status.as_u16()));
            return Err(Error::Remote { kind, message });
        }
        opened();
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| unreachable(&e))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.extend_from_slice(data);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let rest = buf.split_off(i + 1);
                let l = std::mem::replace(&mut buf, rest);
                if !line(&l[..l.len() - 1])? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.call(Method::DELETE, path, None).await?;
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b)
        .map_err(|e| Error::Internal(anyhow::anyhow!("bad answer from the agent: {e}")))
}
