//! Echo: answers with the request's method, path and headers as `x-echo-*` headers, and its
//! body as the response body; prints one line per request to stdout (the function's log).

use wasi::http::types::{Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Echo;

fn method(m: Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Head => "HEAD".into(),
        Method::Patch => "PATCH".into(),
        Method::Options => "OPTIONS".into(),
        Method::Connect => "CONNECT".into(),
        Method::Trace => "TRACE".into(),
        Method::Other(s) => s,
    }
}

fn read_all(body: IncomingBody) -> Vec<u8> {
    let mut out = Vec::new();
    let stream = body.stream().expect("stream once");
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    drop(stream);
    IncomingBody::finish(body);
    out
}

impl wasi::exports::http::incoming_handler::Guest for Echo {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let m = method(req.method());
        let path = req.path_with_query().unwrap_or_default();
        let mut hs = vec![("x-echo-method".to_string(), m.clone().into_bytes()), ("x-echo-path".to_string(), path.clone().into_bytes())];
        for (k, v) in req.headers().entries() {
            hs.push((format!("x-echo-h-{k}"), v));
        }
        let ct = req.headers().get("content-type").into_iter().next().unwrap_or_else(|| b"application/octet-stream".to_vec());
        hs.push(("content-type".to_string(), ct));
        let body = req.consume().map(read_all).unwrap_or_default();
        println!("echo {m} {path} {} bytes", body.len());
        let resp = OutgoingResponse::new(Fields::from_list(&hs).unwrap_or_else(|_| Fields::new()));
        let ob = resp.body().expect("body once");
        ResponseOutparam::set(out, Ok(resp));
        let stream = ob.write().expect("stream once");
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).expect("write");
        }
        drop(stream);
        OutgoingBody::finish(ob, None).expect("finish");
    }
}

wasi::http::proxy::export!(Echo);
