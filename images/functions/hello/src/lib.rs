//! Hello world: answers every request with `200 hello from cloudlet\n` (text/plain).

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_req: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())]).expect("static header");
        let resp = OutgoingResponse::new(headers);
        let body = resp.body().expect("body once");
        ResponseOutparam::set(out, Ok(resp));
        let stream = body.write().expect("stream once");
        stream.blocking_write_and_flush(b"hello from cloudlet\n").expect("write");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish");
    }
}

wasi::http::proxy::export!(Hello);
