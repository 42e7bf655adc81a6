//! Spin: never answers; loops forever (for the CPU-time limit test: the gateway must answer 504
//! and stay responsive). With `?alloc=1` it grows memory until it traps instead (the memory limit).

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Spin;

impl wasi::exports::http::incoming_handler::Guest for Spin {
    fn handle(req: IncomingRequest, _out: ResponseOutparam) {
        if req.path_with_query().unwrap_or_default().contains("alloc=1") {
            eprintln!("spin: allocating until the memory limit");
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(vec![1u8; 1 << 20]);
            }
        }
        eprintln!("spin: looping until the CPU-time limit");
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

wasi::http::proxy::export!(Spin);
