//! A pingora proxy that does nothing but forward: the floor under tollgate's own cost,
//! for `make bench` comparisons. `cargo run --release --example bare_pingora -- ADDR UPSTREAM`
use async_trait::async_trait;
use pingora::prelude::*;

struct Bare(String);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.0.as_str(),
            false,
            String::new(),
        )))
    }
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut server = Server::new(None).expect("server");
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, Bare(args[2].clone()));
    service.add_tcp(&args[1]);
    server.add_service(service);
    server.run_forever();
}
