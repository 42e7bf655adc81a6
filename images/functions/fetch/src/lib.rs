//! Fetch: makes one outbound request to the URL in `?url=http://host[:port]/path` and answers with
//! the upstream's status and body, or `502` and the error the host gave (for the outbound
//! allow-list test: a host the function's allow-list does not name is denied).

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam, Scheme};

struct Fetch;

fn answer(out: ResponseOutparam, status: u16, body: &[u8]) {
    let resp = OutgoingResponse::new(Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())]).expect("static header"));
    let _ = resp.set_status_code(status);
    let ob = resp.body().expect("body once");
    ResponseOutparam::set(out, Ok(resp));
    let stream = ob.write().expect("stream once");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write");
    }
    drop(stream);
    OutgoingBody::finish(ob, None).expect("finish");
}

/// `(authority, path)` of an `http://` URL.
fn split(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (auth, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    Some((auth.to_string(), path))
}

fn get(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (auth, path) = split(url).ok_or("the url must start with http://")?;
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&Scheme::Http)).map_err(|_| "scheme")?;
    req.set_authority(Some(&auth)).map_err(|_| "authority")?;
    req.set_path_with_query(Some(&path)).map_err(|_| "path")?;
    let body = req.body().map_err(|_| "request body")?;
    let fut = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    fut.subscribe().block();
    let resp = fut.get().ok_or("no response")?.map_err(|_| "response taken twice")?.map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let ib = resp.consume().map_err(|_| "response body")?;
    let stream = ib.stream().map_err(|_| "response stream")?;
    let mut out = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    Ok((status, out))
}

impl wasi::exports::http::incoming_handler::Guest for Fetch {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let pq = req.path_with_query().unwrap_or_default();
        let url = pq.split_once("url=").map(|(_, u)| u.split('&').next().unwrap_or(u).to_string()).unwrap_or_default();
        match get(&url) {
            Ok((status, body)) => answer(out, status, &body),
            Err(e) => {
                eprintln!("fetch {url}: {e}");
                answer(out, 502, format!("fetch failed: {e}\n").as_bytes())
            }
        }
    }
}

wasi::http::proxy::export!(Fetch);
