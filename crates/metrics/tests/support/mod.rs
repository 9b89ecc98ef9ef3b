//! Talking to moto's CloudWatch.
//!
//! The current AWS SDK speaks CloudWatch's Smithy RPC v2 CBOR protocol; moto's server answers
//! CloudWatch's JSON protocol (awsJson1_0) and query, not CBOR. [`CborToJson`] sits between
//! them on loopback and changes only the encoding: CBOR request bodies become JSON (CBOR
//! timestamps become epoch seconds), JSON answers become CBOR. Every field the SDK sends reaches
//! moto, which validates and stores it. Queries in the tests go to moto directly in JSON.

#![allow(dead_code)]

use std::net::SocketAddr;

use minicbor::data::{IanaTag, Tag, Type};
use serde_json::{Map, Number, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const TARGET_PREFIX: &str = "GraniteServiceVersion20100801";
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0";

/// The moto endpoint from `CLOUDWATCH_ENDPOINT`, as `host:port`.
pub(crate) fn moto_addr(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A raw HTTP/1.1 exchange: status, headers (lower-case names) and body.
pub(crate) struct Exchange {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Reads one HTTP/1.1 message (request or response) with a Content-Length body, or a body
/// that ends with the connection.
async fn read_message(stream: &mut TcpStream) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = header_end(&buf) {
            break end;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    match headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        Some(len) => {
            while body.len() < len {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            stream.read_to_end(&mut body).await.ok()?;
        }
    }
    Some((first, headers, body))
}

/// Sends one JSON-protocol CloudWatch call to moto.
pub(crate) async fn call_json(
    moto: &str,
    operation: &str,
    body: &[u8],
    authorization: &str,
) -> Exchange {
    let mut stream = TcpStream::connect(moto).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {moto}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: {TARGET_PREFIX}.{operation}\r\nAuthorization: {authorization}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let (status_line, headers, body) = read_message(&mut stream).await.unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    Exchange {
        status,
        headers,
        body,
    }
}

/// A JSON query to moto, answered in JSON.
pub(crate) async fn query(moto: &str, operation: &str, request: Value) -> Value {
    let body = serde_json::to_vec(&request).unwrap();
    let answer = call_json(moto, operation, &body, AUTHORIZATION).await;
    assert_eq!(
        answer.status,
        200,
        "{operation}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    serde_json::from_slice(&answer.body).unwrap()
}

/// The CBOR-to-JSON adapter in front of moto.
pub(crate) struct CborToJson {
    pub(crate) endpoint: String,
    task: JoinHandle<()>,
}

impl Drop for CborToJson {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CborToJson {
    pub(crate) async fn start(moto: &str) -> CborToJson {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let moto = moto.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, moto.clone()));
            }
        });
        CborToJson {
            endpoint: format!("http://{addr}"),
            task,
        }
    }
}

async fn serve(mut stream: TcpStream, moto: String) {
    // One request per connection; the SDK's client reconnects after `Connection: close`.
    let Some((request_line, headers, body)) = read_message(&mut stream).await else {
        return;
    };
    let path = request_line.split(' ').nth(1).unwrap_or_default();
    let operation = path.rsplit('/').next().unwrap_or_default().to_owned();
    let authorization = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map_or(AUTHORIZATION.to_owned(), |(_, v)| v.clone());
    assert!(
        !headers.iter().any(|(k, _)| k == "content-encoding"),
        "disable request compression in the test client"
    );
    let json = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        cbor_to_json(&mut minicbor::Decoder::new(&body))
    };
    let answer = call_json(
        &moto,
        &operation,
        &serde_json::to_vec(&json).unwrap(),
        &authorization,
    )
    .await;
    let answer_json: Value = if answer.body.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(&answer.body).unwrap_or(Value::Object(Map::new()))
    };
    let mut cbor = minicbor::Encoder::new(Vec::new());
    json_to_cbor(&answer_json, &mut cbor);
    let cbor = cbor.into_writer();
    let reason = if answer.status == 200 { "OK" } else { "Error" };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/cbor\r\nsmithy-protocol: rpc-v2-cbor\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        cbor.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&cbor).await;
    let _ = stream.shutdown().await;
}

fn cbor_to_json(d: &mut minicbor::Decoder<'_>) -> Value {
    match d.datatype().unwrap() {
        Type::Bool => Value::Bool(d.bool().unwrap()),
        Type::Null | Type::Undefined => {
            d.skip().unwrap();
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::Number(d.u64().unwrap().into()),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Value::Number(d.i64().unwrap().into()),
        Type::F16 | Type::F32 | Type::F64 => {
            Value::Number(Number::from_f64(d.f64().unwrap()).unwrap())
        }
        Type::String => Value::String(d.str().unwrap().to_owned()),
        Type::StringIndef => {
            let mut s = String::new();
            for part in d.str_iter().unwrap() {
                s.push_str(part.unwrap());
            }
            Value::String(s)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array().unwrap();
            let mut items = Vec::new();
            match len {
                Some(n) => {
                    for _ in 0..n {
                        items.push(cbor_to_json(d));
                    }
                }
                None => {
                    while d.datatype().unwrap() != Type::Break {
                        items.push(cbor_to_json(d));
                    }
                    d.skip().unwrap();
                }
            }
            Value::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map().unwrap();
            let mut map = Map::new();
            let mut entry = |d: &mut minicbor::Decoder<'_>| {
                let key = d.str().unwrap().to_owned();
                let value = cbor_to_json(d);
                map.insert(key, value);
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        entry(d);
                    }
                }
                None => {
                    while d.datatype().unwrap() != Type::Break {
                        entry(d);
                    }
                    d.skip().unwrap();
                }
            }
            Value::Object(map)
        }
        Type::Tag => {
            let tag = d.tag().unwrap();
            assert_eq!(
                tag,
                Tag::from(IanaTag::Timestamp),
                "only timestamps are tagged"
            );
            // Epoch seconds, as awsJson1_0 writes timestamps.
            cbor_to_json(d)
        }
        other => panic!("unexpected CBOR item {other:?}"),
    }
}

fn json_to_cbor(value: &Value, e: &mut minicbor::Encoder<Vec<u8>>) {
    match value {
        Value::Null => {
            e.null().unwrap();
        }
        Value::Bool(b) => {
            e.bool(*b).unwrap();
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                e.u64(u).unwrap();
            } else if let Some(i) = n.as_i64() {
                e.i64(i).unwrap();
            } else {
                e.f64(n.as_f64().unwrap()).unwrap();
            }
        }
        Value::String(s) => {
            e.str(s).unwrap();
        }
        Value::Array(items) => {
            e.array(items.len() as u64).unwrap();
            for item in items {
                json_to_cbor(item, e);
            }
        }
        Value::Object(map) => {
            e.map(map.len() as u64).unwrap();
            for (k, v) in map {
                e.str(k).unwrap();
                json_to_cbor(v, e);
            }
        }
    }
}
