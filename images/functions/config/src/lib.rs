//! Config: answers with the function's configuration, given to it as environment variables
//! (`GREETING`, default "hello"), as `GREETING, world` and a sorted `KEY=value` list.

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Config;

impl wasi::exports::http::incoming_handler::Guest for Config {
    fn handle(_req: IncomingRequest, out: ResponseOutparam) {
        let mut env = wasi::cli::environment::get_environment();
        env.sort();
        let greeting = env.iter().find(|(k, _)| k == "GREETING").map(|(_, v)| v.clone()).unwrap_or_else(|| "hello".into());
        let mut text = format!("{greeting}, world\n");
        for (k, v) in &env {
            text.push_str(&format!("{k}={v}\n"));
        }
        let resp = OutgoingResponse::new(Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())]).expect("static header"));
        let body = resp.body().expect("body once");
        ResponseOutparam::set(out, Ok(resp));
        let stream = body.write().expect("stream once");
        stream.blocking_write_and_flush(text.as_bytes()).expect("write");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish");
    }
}

wasi::http::proxy::export!(Config);
